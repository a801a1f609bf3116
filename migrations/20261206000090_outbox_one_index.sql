-- The outbox keeps one index: `outbox_unpublished`.
--
-- Up to three outbox rows are written per order in a flash sale, and each wrote
-- two index entries: the primary key and the partial index of rows not yet
-- published. Nothing looks a row up by its id but the relay, which marks the
-- rows it has just read — unpublished, so the partial index serves it — and a
-- row leaves that index once marked. Ids stay unique: they come from the
-- column's sequence, and nothing else writes them.
ALTER TABLE outbox DROP CONSTRAINT outbox_pkey;
