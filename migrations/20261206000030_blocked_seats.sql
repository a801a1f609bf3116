-- Seats the organizer took off sale (house seats, broken seats), by label. The
-- event's actor decides a block (only free seats); this column hands them back
-- when the event is loaded again.
ALTER TABLE events ADD COLUMN blocked_seats text[] NOT NULL DEFAULT '{}';
