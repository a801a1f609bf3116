-- A hold and a charge are each updated once in a sale (the hold's status, the
-- charge's completion), in the batch that sells it. Their pages now keep room for
-- that new version beside the old one.
--
-- Holds were filled to 70 %: only some of a page's holds found room for their new
-- version, and in a flash sale two in five status changes went to another page
-- (pg_waldump: 4,352 of 10,417), where they were not HOT and wrote a new entry into
-- each of the table's four indexes, after a row lock and the whole row again.
-- Charges were filled to the brim: four in five completions logged a row lock and
-- the whole row on another page. The completion cannot be HOT (`status` is in the
-- predicate of `charges_open` and the reference is indexed), but on the same page
-- it logs only what changed.
--
-- 45 %, not 50: a page's new versions are a few bytes longer than the old, and the
-- old ones cannot be pruned while the batch that updates them is in progress. The
-- price is twice the pages for these two tables.
ALTER TABLE holds SET (fillfactor = 45);
ALTER TABLE charges SET (fillfactor = 45);
