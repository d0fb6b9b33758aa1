-- Command outcomes, counted by the database rather than by the process that
-- wrote them (README, "Command outcomes"): a worker, `cmdtrack replay`,
-- `cmdtrack reconcile` or `cmdtrack send` alike, once across replicas and
-- redeliveries.
--
-- The merge upsert (store/changes.go) writes, in the same statement as the
-- row change, one row here per kind, product and status of what it changed:
-- commands that reached their first final status (command.finished) and
-- final statuses replaced by another (command.final_changed), with the
-- commands' ids. So a row costs WAL per batch and outcome, not per
-- notification, and takes no lock another writer waits for: nothing is
-- updated in place, and there is no index to maintain.
--
-- The replica holding the lock cmdtrack.metrics folds these rows into
-- outcome_totals (deleting them in the same transaction) and exports the
-- sum of both as cmdtrack_commands_finished_total and
-- cmdtrack_commands_final_changed_total. Webhooks (issue 29) are meant to
-- read the same rows as their outbox: the fold then leaves undelivered
-- events in place.
CREATE TABLE outcome_events (
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text        NOT NULL, -- command.finished, command.final_changed
    product_id  text        NOT NULL, -- '' for commands without one
    status      text        NOT NULL, -- the final status reached
    from_status text        NOT NULL, -- command.final_changed: the final status replaced; else ''
    command_ids text[]      NOT NULL
);

-- The folded counts; they only grow.
CREATE TABLE outcome_totals (
    kind        text   NOT NULL,
    product_id  text   NOT NULL,
    status      text   NOT NULL,
    from_status text   NOT NULL,
    commands    bigint NOT NULL,
    PRIMARY KEY (kind, product_id, status, from_status)
);

-- Final commands deleted by command retention (CMDTRACK_RETENTION_COMMANDS):
-- a notification of one of them heard of again (redelivered, replayed,
-- reconciled by id) recreates its row, but the command finished already and
-- is not counted as finished again. A tombstone is kept one more retention
-- period after the deletion, then deleted in turn; by then such a
-- notification would be older than twice the retention. Written by retention
-- only, read by the merge only for commands reaching a final status.
CREATE TABLE command_tombstones (
    command_id text        PRIMARY KEY,
    status     text        NOT NULL, -- the final status it had
    pruned_at  timestamptz NOT NULL DEFAULT now()
);
-- Rows arrive in pruned_at order: a BRIN index finds the expired ones for
-- next to nothing.
CREATE INDEX command_tombstones_pruned_at ON command_tombstones USING brin (pruned_at);
