-- The journal's two updates (a hold's status, the charge a payment completes) as
-- plain statements, with cached plans, instead of dynamic SQL parsed and planned
-- for every batch.
--
-- They were dynamic because a cached plan is made from the table sizes of its
-- first runs: one made while `holds` was nearly empty (the start of a first sale)
-- went on scanning the whole table for every batch as the rush filled it. The
-- function now turns sequential scans, hash and merge joins off for its own
-- statements (`SET`, restored when it returns), so whatever the sizes, each
-- change is found through its primary key. Parsing, analysing and planning the
-- two statements was 7 % of the function's CPU in a default flash sale (perf).
CREATE OR REPLACE FUNCTION boxoffice_journal_write(
    batch uuid, batch_lock bigint,
    -- the fence: NULL node when the server runs alone
    fence_node text, fence_space int4, fence_keys int4[], fence_events uuid[], fence_epochs int8[],
    -- holds created
    h_id uuid[], h_event uuid[], h_buyer uuid[], h_items text[], h_qty int4[], h_amount int8[],
    h_key text[], h_fp int8[], h_created timestamptz[], h_expires timestamptz[],
    -- hold status changes
    s_id uuid[], s_status text[], s_at timestamptz[],
    -- tickets issued
    t_id uuid[], t_event uuid[], t_hold uuid[], t_owner uuid[], t_section text[], t_seat text[],
    t_price int8[], t_at timestamptz[],
    -- payments, and the charges they complete
    p_id uuid[], p_hold uuid[], p_provider text[], p_ref text[], p_amount int8[], p_currency text[],
    p_charge_key text[],
    -- tickets cancelled
    c_id uuid[], c_at timestamptz[],
    -- outbox
    o_topic text[], o_aggregate uuid[], o_payload text[]
) RETURNS TABLE (lost_event uuid, lost_epoch bigint)
LANGUAGE plpgsql
-- Every statement below finds its rows by key: never by a sequential scan, a hash
-- or a merge join, whatever the tables' sizes were when a statement was planned.
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
DECLARE
    n bigint;
BEGIN
    -- Held until the call's transaction ends: a lookup of a batch whose answer was
    -- lost waits for it (see `batch_committed`).
    PERFORM pg_advisory_xact_lock(batch_lock);
    IF fence_node IS NOT NULL THEN
        -- Shared fence locks in key order; the check is a statement of its own, so
        -- it reads with a snapshot taken after the locks were granted and sees a
        -- takeover that held one.
        PERFORM count(pg_advisory_xact_lock_shared(fence_space, k))
        FROM (SELECT unnest(fence_keys) AS k ORDER BY 1) u;
        RETURN QUERY
            SELECT u.ev, u.ep FROM UNNEST(fence_events, fence_epochs) AS u(ev, ep)
            WHERE NOT EXISTS (SELECT 1 FROM event_leases l
                              WHERE l.event_id = u.ev AND l.epoch = u.ep AND l.node_id = fence_node);
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    INSERT INTO journal_batches (batch_id) VALUES (batch);
    IF cardinality(h_id) > 0 THEN
        INSERT INTO holds (hold_id, event_id, buyer_id, items, quantity, amount, status, idempotency_key,
                           fingerprint, created_at, expires_at, updated_at)
        SELECT id, ev, buyer, items::jsonb, qty, amount, 'active', key, fp, created, expires, created
        FROM UNNEST(h_id, h_event, h_buyer, h_items, h_qty, h_amount, h_key, h_fp, h_created, h_expires)
             AS u(id, ev, buyer, items, qty, amount, key, fp, created, expires);
    END IF;
    IF cardinality(s_id) > 0 THEN
        UPDATE holds SET status = u.status, updated_at = u.at
        FROM UNNEST(s_id, s_status, s_at) AS u(id, status, at)
        WHERE holds.hold_id = u.id;
    END IF;
    IF cardinality(t_id) > 0 THEN
        INSERT INTO tickets (ticket_id, event_id, hold_id, purchaser_id, section, seat_number, price, purchase_date)
        SELECT * FROM UNNEST(t_id, t_event, t_hold, t_owner, t_section, t_seat, t_price, t_at);
    END IF;
    IF cardinality(p_id) > 0 THEN
        INSERT INTO payments (payment_id, hold_id, provider, provider_ref, amount, currency, status)
        SELECT *, 'succeeded' FROM UNNEST(p_id, p_hold, p_provider, p_ref, p_amount, p_currency)
        ON CONFLICT (provider, provider_ref) DO UPDATE SET status = 'succeeded', updated_at = now();
        -- The charge behind each payment has ended as tickets, in the same
        -- transaction: the reconciler never sees a sold charge as open. Found by
        -- its key, or by the reference for charges recorded without one. "Not
        -- ended" is spelled `<> ALL (ended)`, not `IN (open)`, so that no plan
        -- walks `charges_open` (whose predicate `IN (open)` is) for every batch.
        UPDATE charges SET status = 'completed',
               provider_ref = coalesce(charges.provider_ref, u.reference), updated_at = now()
        FROM UNNEST(p_charge_key, p_ref) AS u(charge_key, reference)
        WHERE charges.charge_key = u.charge_key
          AND charges.status <> ALL ('{completed,refunded,declined}');
        IF array_position(p_charge_key, NULL) IS NOT NULL THEN
            UPDATE charges SET status = 'completed', updated_at = now()
            FROM UNNEST(p_charge_key, p_provider, p_ref) AS u(charge_key, provider, reference)
            WHERE u.charge_key IS NULL AND charges.provider = u.provider
              AND charges.provider_ref = u.reference
              AND charges.status <> ALL ('{completed,refunded,declined}');
        END IF;
    END IF;
    IF cardinality(c_id) > 0 THEN
        UPDATE tickets SET status = 'cancelled', cancelled_at = u.at
        FROM UNNEST(c_id, c_at) AS u(id, at)
        WHERE tickets.ticket_id = u.id AND tickets.status = 'valid';
        -- A ticket scanned at the door between the cancel request and this write
        -- is no longer `valid`: refuse the change so its seat is not sold again.
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n <> cardinality(c_id) THEN
            RAISE EXCEPTION 'a cancelled ticket is no longer valid' USING ERRCODE = 'P0002';
        END IF;
    END IF;
    IF cardinality(o_topic) > 0 THEN
        INSERT INTO outbox (topic, aggregate_id, payload)
        SELECT topic, aggregate, payload::json FROM UNNEST(o_topic, o_aggregate, o_payload)
             AS u(topic, aggregate, payload);
    END IF;
END
$$;
