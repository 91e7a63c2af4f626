-- One schema for SQLite and PostgreSQL: TEXT ids, BIGINT unix seconds, secrets as base64 TEXT.
CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    email          TEXT UNIQUE,
    password_hash  TEXT,
    created_at     BIGINT NOT NULL,
    failed_logins  BIGINT NOT NULL DEFAULT 0,
    locked_until   BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE identities (
    provider  TEXT NOT NULL,
    subject   TEXT NOT NULL,
    user_id   TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (provider, subject)
);
CREATE TABLE sessions (
    id_hash     TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE TABLE oauth_states (
    state          TEXT PRIMARY KEY,
    provider       TEXT NOT NULL,
    pkce_verifier  TEXT NOT NULL,
    return_to      TEXT NOT NULL,
    expires_at     BIGINT NOT NULL
);
CREATE TABLE device_codes (
    device_code_hash  TEXT PRIMARY KEY,
    user_code         TEXT NOT NULL UNIQUE,
    device_name       TEXT NOT NULL,
    device_os         TEXT NOT NULL,
    device_ip         TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    poll_interval     BIGINT NOT NULL,
    last_poll_at      BIGINT NOT NULL DEFAULT 0,
    status            TEXT NOT NULL,
    user_id           TEXT
);
CREATE TABLE agents (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    os                  TEXT NOT NULL,
    token_hash          TEXT NOT NULL UNIQUE,
    signing_secret_enc  TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    last_seen_at        BIGINT NOT NULL DEFAULT 0,
    revoked_at          BIGINT NOT NULL DEFAULT 0,
    version             TEXT NOT NULL DEFAULT '',
    workspaces          BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX agents_by_user ON agents(user_id);
CREATE TABLE nonces (
    agent_id    TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (agent_id, nonce)
);
CREATE INDEX nonces_by_expiry ON nonces(expires_at);
CREATE TABLE events (
    agent_id     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    kind         TEXT NOT NULL,
    at           BIGINT NOT NULL,
    payload      TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    PRIMARY KEY (agent_id, event_id)
);
CREATE TABLE rate_limits (
    bucket        TEXT PRIMARY KEY,
    hits          BIGINT NOT NULL,
    window_start  BIGINT NOT NULL
);
CREATE TABLE mcp_servers (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    command     TEXT NOT NULL,
    url         TEXT NOT NULL,
    env_enc     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (user_id, name)
);
