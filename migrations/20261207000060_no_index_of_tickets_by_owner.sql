-- A buyer's tickets are listed through the buyer's holds (`holds_buyer`) and each
-- hold's tickets (`tickets_hold`): a ticket's owner is its hold's buyer. The index
-- of tickets by owner (`purchaser_id`, `purchase_date`) served only that list, and
-- cost every sold ticket an entry at a random place in the index: in a flash sale,
-- 2.5 entries per order, each on whichever leaf page its buyer's tickets sit.
DROP INDEX tickets_purchaser;
