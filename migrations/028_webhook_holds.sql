-- holds: an event of this row's endpoint and subject waits behind it
-- (next_attempt_at infinity), so that settling this row must make the next
-- one due. Set where an event is put behind others: the fold, on the
-- pending rows it goes behind and on its own rows that are not the last of
-- their subject; a replay, on every pending row of the subjects it puts
-- back. Never cleared: a row that holds nothing but says it does only costs
-- its settle one more statement (store.WebhookDelivered).
--
-- Without it, every delivered settle probed the subject index for each of
-- its subjects to find the few with an event behind them: in make bench
-- with one endpoint, 1.2 ms a settle, the outbox's costliest statement
-- (docs/benchmarks.md, "A settle probes only the subjects that hold
-- something").
--
-- A constant default: adding the column rewrites nothing. The rows pending
-- now that hold an event behind them are marked, so that the rule holds
-- from the first settle: every pending row that a held row waits behind
-- says so.
ALTER TABLE webhook_deliveries ADD COLUMN holds boolean NOT NULL DEFAULT false;

UPDATE webhook_deliveries d SET holds = true
WHERE d.state = 'pending' AND EXISTS (
    SELECT FROM webhook_deliveries h
    WHERE h.endpoint = d.endpoint AND h.subject = d.subject AND h.state = 'pending'
        AND h.next_attempt_at = 'infinity' AND h.id > d.id);
