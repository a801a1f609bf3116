-- The waiting room (docs/domain.md, section "Waiting room").
--
-- `events.waiting_room`: the organizer's settings, part of the sales window
-- ({"enabled", "rate_per_minute" (null = auto), "admission_ttl_secs", "waitlist"});
-- NULL = no room.
ALTER TABLE events ADD COLUMN waiting_room jsonb;
-- Every node's ticker lists the rooms a few times a second.
CREATE INDEX events_waiting_rooms ON events (event_id) WHERE waiting_room IS NOT NULL;

-- One row per event with a room: its opening (the pre-queue shuffle, kept for
-- audit: the seed re-derives the order) and the counters the owner keeps.
-- Written by the node holding the event's lease, fenced by its epoch.
CREATE TABLE queue_rooms (
    event_id         uuid PRIMARY KEY REFERENCES events ON DELETE CASCADE,
    opened_at        timestamptz,
    shuffle_seed     bigint,
    shuffled         integer NOT NULL DEFAULT 0,
    opened_by_node   text,
    opened_epoch     bigint,
    -- Post-opening joins so far (a joiner's place is shuffled + this).
    joined_after     bigint NOT NULL DEFAULT 0,
    -- Highest place admitted so far: whoever has a place above waits.
    admitted_through bigint NOT NULL DEFAULT 0,
    admitted_total   bigint NOT NULL DEFAULT 0,
    expired_total    bigint NOT NULL DEFAULT 0,
    -- Set while the sale is sold out (nothing free and nothing held).
    sold_out_at      timestamptz
);

-- The queue: one entry per account and event. `seq` is the join order,
-- `position` the place in line (NULL for a pre-queue entry until the opening).
-- No foreign keys: a hot table, written from verified tokens (like `holds`).
CREATE TABLE queue_entries (
    event_id             uuid NOT NULL,
    user_id              uuid NOT NULL,
    seq                  bigserial,
    joined_at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    pre_queue            boolean NOT NULL,
    position             bigint,
    state                text NOT NULL DEFAULT 'waiting'
                         CHECK (state IN ('waiting', 'admitted', 'used', 'expired', 'sold_out')),
    admitted_at          timestamptz,
    admission_expires_at timestamptz,
    PRIMARY KEY (event_id, user_id)
);
CREATE INDEX queue_entries_line ON queue_entries (event_id, position) WHERE state = 'waiting';
CREATE INDEX queue_entries_unplaced ON queue_entries (event_id, seq) WHERE position IS NULL;
CREATE INDEX queue_entries_admitted ON queue_entries (event_id, admission_expires_at) WHERE state = 'admitted';
