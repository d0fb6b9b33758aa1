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
-- Its webhook-id, evt_<installation>_<outcome_events.id>_<ordinal in
-- command_ids>, is the same for every endpoint and every attempt: receivers
-- deduplicate on it. The installation (cmdtrack_settings.installation_id,
-- random, made once here) keeps two databases, or one rebuilt, from giving
-- one id to two events. The routes are a table (webhook_routes), written
-- by the worker that started last with webhook settings: whichever replica
-- folds, it dispatches with the same routes.
--
-- Every replica delivers (package webhook): a claim takes a few due rows of
-- its endpoint FOR UPDATE SKIP LOCKED and moves their next_attempt_at on by
-- a lease, in a statement of its own, so that no transaction stays open
-- while an HTTP request runs; a worker that dies loses its lease and the
-- row is claimed again. A row is claimed only when no earlier row of its
-- endpoint and subject is pending: in order per command, a later event
-- waiting while an earlier one is leased or in backoff. Such a row waits out
-- of the claim's range (next_attempt_at 'infinity'), so that a claim never
-- walks past a dead endpoint's held-back rows: the fold writes it so when
-- its subject already has a pending row, and the settle that delivers or
-- fails a row, or the replay that puts one back, makes the subject's next
-- one due. A delivered row is
-- deleted (the cheapest in WAL; the counts are in metrics and in
-- webhook_endpoints); one that failed for good stays, visible and
-- replayable, and no longer holds its subject's later events back. A
-- replay (cmdtrack webhooks replay) makes it pending again with the whole
-- retry window, counted from replayed_at rather than from occurred_at.
--
-- Each index costs WAL for every notification that finishes, at the
-- insert and again at every claim (next_attempt_at moves: no HOT update),
-- so each is partial: the claim's, the order's and the backlog's (pending
-- rows only) and the failed rows' (none but those).
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
-- The order per subject: is an earlier row of it pending, which is the
-- next one?
CREATE INDEX webhook_deliveries_subject ON webhook_deliveries (endpoint, subject, id) WHERE state = 'pending';
-- Each endpoint's backlog, oldest first: the metrics read its size (a
-- capped count) and age here, never the whole outbox.
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (endpoint, occurred_at) WHERE state = 'pending';
-- The failed rows, newest first (the console, cmdtrack webhooks replay),
-- and by endpoint (the metrics); failed rows only, few.
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (id) WHERE state = 'failed';
CREATE INDEX webhook_deliveries_failed_endpoint ON webhook_deliveries (endpoint, id) WHERE state = 'failed';

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

-- The routes the fold dispatches with: each endpoint and the events it
-- takes (empty: all). Written at start by a worker with webhook settings
-- (store.SetWebhookRoutes: the newest settings win, the routes of endpoints
-- they lack deleted and their pending events failed); left alone by a
-- worker without; cmdtrack webhooks forget deletes one.
CREATE TABLE webhook_routes (
    endpoint   text        PRIMARY KEY,
    types      text[]      NOT NULL DEFAULT '{}',
    products   text[]      NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The installation's id in every webhook-id (random, made once).
ALTER TABLE cmdtrack_settings
    ADD COLUMN installation_id text NOT NULL DEFAULT substr(md5(gen_random_uuid()::text), 1, 16);
