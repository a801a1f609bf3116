-- ORGANIZER_SIGNUP=approval: an organizer publishes only once an administrator approved
-- the account. Organizers from before the setting existed sold under `open` rules and
-- count as approved.
ALTER TABLE users ADD COLUMN approved_at timestamptz;
UPDATE users SET approved_at = created_at WHERE user_type = 'organizer';
