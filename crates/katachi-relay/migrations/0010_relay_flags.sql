-- One-time steps of the relay that must not run twice, by name (e.g. binding sealed values to their
-- rows: once done, an unbound value put back into the database is never bound again).
CREATE TABLE relay_flags (
    name    TEXT PRIMARY KEY,
    set_at  BIGINT NOT NULL
);
-- Every instance looks for agents revoked lately (on any instance) every 2 s.
CREATE INDEX agents_by_revoked_at ON agents(revoked_at);
