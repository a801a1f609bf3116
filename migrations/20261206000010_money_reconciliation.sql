-- Money is never stranded (docs/domain.md, "Orders and payments"): every charge
-- ends as tickets or a refund, and a reconciler proves it.

-- One row per charge attempt, written before the provider is asked, so a charge
-- whose request died (shed, timeout, journal failure, crash) is found and carried
-- to its end by the reconciler. `charge_key` is the provider's idempotency key
-- (`{hold}:{payment method}`): asking again with it answers the first charge.
--
--   started   written; the provider's answer is not known yet
--   pending   the provider has not decided (3-D Secure): the webhook or a poll tells
--   charged   money captured, no tickets yet
--   completed tickets issued for this charge (set by the journal, in the sale's transaction)
--   refunded  handed back: a row in `refunds` carries the refund to its end
--   declined  no money moved
CREATE TABLE charges (
    charge_key     text PRIMARY KEY,
    provider       text NOT NULL,
    hold_id        uuid NOT NULL,
    event_id       uuid NOT NULL,
    buyer_id       uuid NOT NULL,
    payment_method text NOT NULL,
    amount         bigint NOT NULL CHECK (amount >= 0),
    currency       text NOT NULL,
    provider_ref   text,
    status         text NOT NULL
                   CHECK (status IN ('started', 'pending', 'charged', 'completed', 'refunded', 'declined')),
    attempts       integer NOT NULL DEFAULT 0,
    next_check_at  timestamptz NOT NULL,
    last_error     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX charges_reference ON charges (provider, provider_ref) WHERE provider_ref IS NOT NULL;
CREATE INDEX charges_open ON charges (next_check_at) WHERE status IN ('started', 'pending', 'charged');
-- No index by event: every index is written twice per order in a flash sale (the
-- insert and the completion), and only `boxoffice reconcile` reads by event.

-- Charges made before this table existed ended as sales.
INSERT INTO charges (charge_key, provider, hold_id, event_id, buyer_id, payment_method, amount, currency,
                     provider_ref, status, next_check_at, created_at, updated_at)
SELECT 'legacy:' || p.payment_id, p.provider, p.hold_id, h.event_id, h.buyer_id, 'unknown', p.amount, p.currency,
       p.provider_ref, 'completed', now(), p.created_at, p.updated_at
FROM payments p JOIN holds h ON h.hold_id = p.hold_id;

-- Refunds are retried by status, with backoff, until the provider says succeeded.
ALTER TABLE refunds ADD COLUMN event_id uuid;
ALTER TABLE refunds ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE refunds ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE refunds ADD COLUMN last_error text;
UPDATE refunds r SET event_id = h.event_id FROM holds h WHERE h.hold_id = r.hold_id;
DROP INDEX refunds_pending;
CREATE INDEX refunds_open ON refunds (next_attempt_at) WHERE status <> 'succeeded';
CREATE INDEX refunds_event ON refunds (event_id);

-- The webhook inbox: a delivery is committed here before the provider gets its
-- 2xx, then processed from here with retries; a failure never consumes it.
ALTER TABLE webhook_events ADD COLUMN kind jsonb;
ALTER TABLE webhook_events ADD COLUMN status text NOT NULL DEFAULT 'processed'
    CHECK (status IN ('received', 'processed'));
ALTER TABLE webhook_events ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE webhook_events ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE webhook_events ADD COLUMN last_error text;
ALTER TABLE webhook_events ADD COLUMN processed_at timestamptz;
CREATE INDEX webhook_events_open ON webhook_events (next_attempt_at) WHERE status = 'received';

-- An event's cancellation: the durable intent, written with the status change.
-- The cancellation job (re)runs until every ticket is cancelled and has its
-- refund recorded; `completed_at` says it finished.
CREATE TABLE event_cancellations (
    event_id     uuid PRIMARY KEY REFERENCES events ON DELETE CASCADE,
    reason       text NOT NULL CHECK (length(reason) <= 1000),
    requested_by uuid NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);
CREATE INDEX event_cancellations_open ON event_cancellations (requested_at) WHERE completed_at IS NULL;
