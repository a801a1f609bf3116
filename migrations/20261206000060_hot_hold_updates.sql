-- A hold's status change (active → purchased, expired or released) was a non-HOT
-- update: `status` and `updated_at` appeared in the predicates and keys of the two
-- partial indexes by event, so every change wrote a new entry into each of the
-- table's four indexes. One plain index by event serves the same reads (the
-- loader, cancellation, the dashboard's counts all filter by event first), and
-- free room on each page lets the new version stay on its page (HOT): a status
-- change then writes no index entry at all.
DROP INDEX holds_event_live;
DROP INDEX holds_event_ended;
CREATE INDEX holds_event ON holds (event_id);
ALTER TABLE holds SET (fillfactor = 70);
