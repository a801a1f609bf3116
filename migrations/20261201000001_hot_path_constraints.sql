-- The journal's hot tables without the foreign keys that cost the flash sale most.
--
-- Every foreign-key check takes a FOR KEY SHARE lock on the referenced row: a
-- heap write and a WAL record per check, and, when two journal transactions lock
-- the same row at once, a MultiXact. A sale of 20,000 seats made ~95,000 such
-- checks (pg_stat_statements), most of them on the same event row and the same
-- few thousand buyer rows.
--
-- The ids these columns hold are never user input: the event's actor writes its
-- own event id, the hold ids it created, and buyer ids from verified tokens, and
-- users are never deleted. `holds.event_id` keeps its foreign key: it is what
-- stops an event from being deleted while a hold for it is being written (see
-- `delete_event`), and one lock per hold is cheap next to one per ticket.
-- The seat invariant's second line of defence, `tickets_one_per_seat`, stays.
ALTER TABLE tickets DROP CONSTRAINT tickets_event_id_fkey;
ALTER TABLE tickets DROP CONSTRAINT tickets_hold_id_fkey;
ALTER TABLE tickets DROP CONSTRAINT tickets_purchaser_id_fkey;
ALTER TABLE holds DROP CONSTRAINT holds_buyer_id_fkey;
ALTER TABLE payments DROP CONSTRAINT payments_hold_id_fkey;
