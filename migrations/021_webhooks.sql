-- Webhooks (issue 29; README "Webhooks"): the outcomes pushed to the
-- applications that subscribe to them, from a transactional outbox.
--
-- The merge writes outcome_events in the same statement as the row change
-- that causes them (migrations 013, 019). The replica holding the metrics
-- lease folds them (store.FoldOutcomes): in one statement it deletes them,
-- adds them to outcome_totals and inserts here one delivery per id in
-- command_ids and endpoint whose route takes it. So there is never an
-- event without its change nor a change without its event, and each is
-- dispatched once across replicas and redeliveries, as it is counted once.
-- Its webhook-id, evt_<outcome_events.id>_<ordinal in command_ids>, is the
-- same for every endpoint and every attempt: receivers deduplicate on it.
--
-- Every replica delivers (package webhook): a claim takes a few due rows of
-- its endpoint FOR UPDATE SKIP LOCKED and moves their next_attempt_at on by
-- a lease, in a statement of its own, so that no transaction stays open
-- while an HTTP request runs; a worker that dies loses its lease and the
-- row is claimed again. A row is claimed only when no earlier row of its
-- endpoint and subject is pending: in order per command, a later event
-- waiting while an earlier one is leased or in backoff. A delivered row is
-- deleted (the cheapest in WAL; the counts are in metrics and in
-- webhook_endpoints); one that failed for good stays, visible and
-- replayable, and no longer holds its subject's later events back. A
-- replay (cmdtrack webhooks replay) makes it pending again with the whole
-- retry window, counted from replayed_at rather than from occurred_at.
--
-- Each index costs WAL for every notification that finishes, at the
-- insert and again at every claim (next_attempt_at moves: no HOT update),
-- so there are three besides the key, each partial: the claim's, the
-- order's (pending rows only) and the failed rows' (none but those).
CREATE TABLE webhook_deliveries (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint        text        NOT NULL, -- the endpoint's name (CMDTRACK_WEBHOOK_URL's is 'default')
    webhook_id      text        NOT NULL, -- evt_<outcome_events.id>_<1-based ordinal in command_ids>
    type            text        NOT NULL, -- outcome_events.kind: command.finished, ...
    subject         text        NOT NULL, -- the id in command_ids: a command, 'device_id/message_id', a call
    product_id      text        NOT NULL,
    status          text        NOT NULL,
    from_status     text        NOT NULL, -- *.final_changed: the final status replaced; else ''
    occurred_at     timestamptz NOT NULL, -- outcome_events.at
    attempts        integer     NOT NULL DEFAULT 0, -- claims so far
    -- When it may be claimed: now at first, then the end of a claim's lease
    -- or of a retry's backoff.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    state           text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'failed')),
    last_error      text,
    failed_at       timestamptz,
    -- The last replay: the retry window runs from the later of this and
    -- occurred_at (store.WebhookEvent.Since).
    replayed_at     timestamptz
);
-- The claim: an endpoint's due rows, oldest due first.
CREATE INDEX webhook_deliveries_claim ON webhook_deliveries (endpoint, next_attempt_at, id) WHERE state = 'pending';
-- The order per subject: is an earlier row of it pending? Nearly one
-- entry per subject and endpoint; the claim checks the endpoint on the row.
CREATE INDEX webhook_deliveries_subject ON webhook_deliveries (subject, id) WHERE state = 'pending';
-- The failed rows, newest first (the console, cmdtrack webhooks replay).
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (id) WHERE state = 'failed';

-- Each endpoint's record, for the console: written once per settled batch
-- (store.WebhookDelivered, RetryWebhook, FailWebhook), not per event.
CREATE TABLE webhook_endpoints (
    endpoint        text        PRIMARY KEY,
    delivered       bigint      NOT NULL DEFAULT 0,
    failed          bigint      NOT NULL DEFAULT 0, -- failed for good, replayed or not
    last_success_at timestamptz,
    last_failure_at timestamptz, -- an attempt that failed, retried or not
    last_error      text
);
