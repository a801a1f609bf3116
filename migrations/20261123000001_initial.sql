-- boxoffice schema.
--
-- PostgreSQL records; the event actors decide. Nothing here is locked to
-- arbitrate a seat. The constraints below are a second line of defence: if the
-- engine ever tried to sell a seat twice, the journal's write would fail and the
-- sale would be undone rather than stored.

CREATE TABLE users (
    user_id       uuid PRIMARY KEY,
    email         text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    password_hash text NOT NULL,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    user_type     text NOT NULL CHECK (user_type IN ('customer', 'organizer', 'staff', 'admin')),
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- Emails are unique case-insensitively.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- Opaque refresh tokens, stored as SHA-256 hashes. Each login starts a family;
-- each refresh rotates the token within it. Presenting a rotated token again
-- revokes the whole family (it was stolen, or replayed).
CREATE TABLE refresh_tokens (
    token_hash  bytea PRIMARY KEY,
    family_id   uuid NOT NULL,
    user_id     uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    rotated_at  timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE events (
    event_id        uuid PRIMARY KEY,
    organizer_id    uuid NOT NULL REFERENCES users,
    title           text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description     text NOT NULL DEFAULT '',
    category        text,
    venue_name      text NOT NULL CHECK (length(venue_name) BETWEEN 1 AND 200),
    venue_address   text,
    event_date      timestamptz NOT NULL,
    currency        text NOT NULL DEFAULT 'JPY' CHECK (currency ~ '^[A-Z]{3}$'),
    status          text NOT NULL DEFAULT 'draft'
                    CHECK (status IN ('draft', 'published', 'closed', 'cancelled')),
    -- The seat map as uploaded (see actors/src/seatmap.rs); compiled in memory on
    -- activation. Sections and rows, not one row per seat: a 50k-seat map is a
    -- few hundred rows of JSON and loads in a millisecond.
    seat_map        jsonb,
    total_seats     integer NOT NULL DEFAULT 0 CHECK (total_seats >= 0),
    min_price       bigint,
    max_price       bigint,
    -- Sales window.
    opens_at        timestamptz,
    closes_at       timestamptz,
    per_buyer_limit integer NOT NULL DEFAULT 10 CHECK (per_buyer_limit BETWEEN 1 AND 50),
    hold_ttl_secs   integer NOT NULL DEFAULT 600 CHECK (hold_ttl_secs BETWEEN 5 AND 86400),
    -- Seats sold or held, as last reported by the event's actor (for search
    -- filters and listings; never used to decide a sale).
    taken_count     integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    search          tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', coalesce(title, '')), 'A') ||
        setweight(to_tsvector('simple', coalesce(venue_name, '') || ' ' || coalesce(category, '')), 'B') ||
        setweight(to_tsvector('simple', coalesce(description, '')), 'C')
    ) STORED,
    CHECK (closes_at IS NULL OR opens_at IS NULL OR closes_at > opens_at)
);
CREATE INDEX events_search ON events USING gin (search);
CREATE INDEX events_published_date ON events (event_date, event_id) WHERE status = 'published';
CREATE INDEX events_published_category ON events (category, event_date) WHERE status = 'published';
CREATE INDEX events_organizer ON events (organizer_id, created_at DESC);

CREATE TABLE staff_assignments (
    event_id   uuid NOT NULL REFERENCES events ON DELETE CASCADE,
    staff_id   uuid NOT NULL REFERENCES users,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, staff_id)
);

-- A hold (seed 004's "order" in state created). Once purchased, the hold id is the order id.
CREATE TABLE holds (
    hold_id         uuid PRIMARY KEY,
    event_id        uuid NOT NULL REFERENCES events,
    buyer_id        uuid NOT NULL REFERENCES users,
    items           jsonb NOT NULL,
    quantity        integer NOT NULL CHECK (quantity > 0),
    amount          bigint NOT NULL CHECK (amount >= 0),
    status          text NOT NULL CHECK (status IN ('active', 'purchased', 'expired', 'released')),
    idempotency_key text,
    fingerprint     bigint NOT NULL,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE UNIQUE INDEX holds_idempotency_key ON holds (event_id, buyer_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX holds_event_live ON holds (event_id) WHERE status IN ('active', 'purchased');
CREATE INDEX holds_event_ended ON holds (event_id, updated_at) WHERE status IN ('expired', 'released');
CREATE INDEX holds_buyer ON holds (buyer_id, created_at DESC);

CREATE TABLE payments (
    payment_id   uuid PRIMARY KEY,
    hold_id      uuid NOT NULL REFERENCES holds,
    provider     text NOT NULL,
    provider_ref text NOT NULL,
    amount       bigint NOT NULL CHECK (amount >= 0),
    currency     text NOT NULL,
    status       text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'refunded')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, provider_ref)
);
CREATE INDEX payments_hold ON payments (hold_id);

CREATE TABLE tickets (
    ticket_id     uuid PRIMARY KEY,
    event_id      uuid NOT NULL REFERENCES events,
    hold_id       uuid NOT NULL REFERENCES holds,
    purchaser_id  uuid NOT NULL REFERENCES users,
    section       text NOT NULL,
    seat_number   text,
    price         bigint NOT NULL CHECK (price >= 0),
    status        text NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'used', 'cancelled')),
    purchase_date timestamptz NOT NULL,
    cancelled_at  timestamptz
);
-- Second line of defence against overselling: a seat has at most one ticket that is not cancelled.
CREATE UNIQUE INDEX tickets_one_per_seat ON tickets (event_id, seat_number)
    WHERE status <> 'cancelled' AND seat_number IS NOT NULL;
CREATE INDEX tickets_event ON tickets (event_id);
CREATE INDEX tickets_purchaser ON tickets (purchaser_id, purchase_date DESC);
CREATE INDEX tickets_hold ON tickets (hold_id);

-- The record behind "a ticket admits once": the primary key is the guarantee.
CREATE TABLE check_ins (
    ticket_id     uuid PRIMARY KEY REFERENCES tickets,
    staff_id      uuid NOT NULL REFERENCES users,
    checked_in_at timestamptz NOT NULL DEFAULT now()
);

-- One refund per cancelled ticket (or per purchase whose seats were gone).
-- Written `pending` before the provider is asked, so a crash in between is
-- retried, never forgotten; the provider call is idempotent on `refund_key`.
CREATE TABLE refunds (
    refund_key   text PRIMARY KEY,
    hold_id      uuid NOT NULL REFERENCES holds,
    ticket_id    uuid REFERENCES tickets,
    provider     text NOT NULL,
    payment_ref  text NOT NULL,
    amount       bigint NOT NULL CHECK (amount >= 0),
    status       text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    provider_ref text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_pending ON refunds (created_at) WHERE status = 'pending';

-- Webhook deliveries already processed (providers deliver at least once).
CREATE TABLE webhook_events (
    provider    text NOT NULL,
    event_id    text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, event_id)
);

-- Every state change, written in the same transaction as the change, relayed
-- later to Redis Streams / email / webhooks. The id is the dedupe key.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    topic        text NOT NULL,
    aggregate_id uuid NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
