-- Browsers where an account signed in with its password: a correct password from one of them still
-- signs in while the account's failure delay runs (a stranger cannot lock the owner out).
CREATE TABLE known_browsers (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX known_browsers_by_expiry ON known_browsers(expires_at);
