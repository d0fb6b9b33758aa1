-- webhook_deliveries_subject (migration 021) holds the failed events too:
-- no longer partial. The statements that look for a subject's events (the
-- claim's first-of-its-subject test, the fold's probe of the backlog, the
-- settles, a retry, a replay) say state <> 'failed', which no partial
-- index's predicate follows from, so that this index is the only one that
-- answers them, whatever the statistics say. While the table was never
-- analyzed (a new installation, or a backlog grown since), the planner took
-- 'pending' to price the partial indexes at a row or two and read the
-- endpoint's whole backlog through the pending index or the claim index,
-- per event: in make bench with one endpoint and 200,000 notifications,
-- the fold 2.0 s a call (950,000 buffers), the claim 8.7 ms (3,100), the
-- backends 937 us of CPU per notification (docs/benchmarks.md, "The
-- outbox's plans, whatever the statistics"). Failed events are few; each
-- adds an entry here.
--
-- Rebuilding takes the table's write lock for as long as it takes: the
-- outbox holds the events not yet delivered, seconds' worth when the
-- endpoints answer.
DROP INDEX webhook_deliveries_subject;
CREATE INDEX webhook_deliveries_subject ON webhook_deliveries (endpoint, subject, id);
