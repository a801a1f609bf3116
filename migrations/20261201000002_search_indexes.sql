-- Search (GET /events/search) over published events only, as the endpoint asks.
--
-- Price filters: an event matches a range when its prices overlap it
-- (min_price <= max AND max_price >= min). Each index is in the order of one price
-- sort (`price`, `-price`, ties by event_id) and carries the other bound as a key
-- column, checked inside the index: a page reads the rows it returns, and the capped
-- count is an index-only scan.
CREATE INDEX events_published_min_price ON events (min_price, event_id, max_price) WHERE status = 'published';
CREATE INDEX events_published_max_price ON events (max_price DESC NULLS LAST, event_id, min_price)
    WHERE status = 'published';

-- Full text: only published events are ever searched, so the GIN index holds only
-- them, and a match needs no status check on the table.
DROP INDEX events_search;
CREATE INDEX events_published_search ON events USING gin (search) WHERE status = 'published';
