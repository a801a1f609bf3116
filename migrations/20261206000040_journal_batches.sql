-- One row per journal batch, written in the batch's own transaction: when the
-- answer to a COMMIT is lost (the connection drops), the journal looks the batch
-- up to learn whether it committed, instead of guessing. Rows older than a few
-- minutes are deleted by the journal itself.
CREATE TABLE journal_batches (
    batch_id     uuid PRIMARY KEY,
    committed_at timestamptz NOT NULL DEFAULT now()
);
