-- Several server processes on one database (docs/domain.md, "Several nodes").
--
-- `nodes`: the membership, one row per process, kept alive by heartbeats. A node
-- whose heartbeat is older than the lease TTL is dead to the others.
CREATE TABLE nodes (
    node_id       text PRIMARY KEY CHECK (length(node_id) BETWEEN 1 AND 64),
    advertise_url text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    stopped_at    timestamptz
);

-- Who runs each event's actor. A node may take an event whose lease expired (or is
-- its own); taking it increments `epoch`. Every journal transaction locks the
-- lease rows of the events it writes (FOR SHARE) and checks their epoch, so a
-- deposed owner's writes are refused and a new owner loads after the old owner's
-- last commit. Rows are never deleted: epochs only grow.
CREATE TABLE event_leases (
    event_id    uuid PRIMARY KEY,
    node_id     text NOT NULL,
    epoch       bigint NOT NULL CHECK (epoch > 0),
    expires_at  timestamptz NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_leases_node ON event_leases (node_id);
