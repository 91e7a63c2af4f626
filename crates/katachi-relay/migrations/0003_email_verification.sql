-- E-mail verification of password accounts. Accounts that existed before start unverified (0): a
-- password account verifies through a mailed link before it can approve devices. Accounts without
-- a password (GitHub, Google) need no verification: their provider vouches for them.
ALTER TABLE users ADD COLUMN email_verified_at BIGINT NOT NULL DEFAULT 0;
-- Single-use links, stored by hash of their token; `email` is the address the link was sent to.
CREATE TABLE email_verifications (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX email_verifications_by_expiry ON email_verifications(expires_at);
