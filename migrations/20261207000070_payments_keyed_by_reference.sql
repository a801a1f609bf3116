-- A payment is found by its provider's reference (the journal's upsert, webhooks,
-- refunds) or by its hold (`payments_hold`), never by `payment_id`: the index of
-- that key cost every sale an entry and was never read. The provider's reference
-- becomes the primary key; `payment_id` stays, a plain column.
ALTER TABLE payments DROP CONSTRAINT payments_pkey;
ALTER TABLE payments DROP CONSTRAINT payments_provider_provider_ref_key;
ALTER TABLE payments ADD CONSTRAINT payments_pkey PRIMARY KEY (provider, provider_ref);
