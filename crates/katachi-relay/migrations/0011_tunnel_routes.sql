-- Relay instances sharing this database (issue 14): each start is a new instance. `internal_url` is
-- where the other instances reach its internal listener; `cert_sha256` pins that listener's
-- certificate, and the client certificate it presents when it calls another instance.
CREATE TABLE relay_instances (
    id            TEXT PRIMARY KEY,
    internal_url  TEXT NOT NULL,
    cert_sha256   TEXT NOT NULL,
    started_at    BIGINT NOT NULL,
    seen_at       BIGINT NOT NULL
);
-- Which instance holds each agent's tunnel now; `generation` tells a tunnel from a later one.
CREATE TABLE tunnel_routes (
    agent_id     TEXT PRIMARY KEY,
    instance_id  TEXT NOT NULL,
    generation   BIGINT NOT NULL,
    opened_at    BIGINT NOT NULL
);
CREATE INDEX tunnel_routes_by_instance ON tunnel_routes(instance_id);
