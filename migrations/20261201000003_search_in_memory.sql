-- Search is answered from the server's memory (src/search.rs). The index learns
-- what changed from PostgreSQL itself, so it stays right whoever writes `events`:
--
-- * every inserted or updated row carries the id of the transaction that wrote it;
--   the index re-reads the rows stamped at or after the oldest transaction still
--   running at its previous read, so a transaction that commits late is not missed;
-- * every deleted row leaves a tombstone, read the same way.
ALTER TABLE events ADD COLUMN search_xid xid8 NOT NULL DEFAULT '0';

CREATE FUNCTION events_stamp_search_xid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.search_xid := pg_current_xact_id();
    RETURN NEW;
END
$$;
CREATE TRIGGER events_stamp_search_xid BEFORE INSERT OR UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION events_stamp_search_xid();
CREATE INDEX events_search_xid ON events (search_xid);

CREATE TABLE event_deletions (
    event_id    uuid NOT NULL,
    deleted_xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    deleted_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_deletions_xid ON event_deletions (deleted_xid);

CREATE FUNCTION events_record_deletion() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_deletions (event_id) VALUES (OLD.event_id);
    RETURN OLD;
END
$$;
CREATE TRIGGER events_record_deletion AFTER DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_record_deletion();

-- What only the SQL search used.
DROP INDEX events_published_search;
DROP INDEX events_published_min_price;
DROP INDEX events_published_max_price;
DROP INDEX events_published_category;
DROP INDEX events_published_date;
ALTER TABLE events DROP COLUMN search;
