-- The lifecycle of each device command, one row per command_id. Rows are only
-- ever written through the merge upsert in store/apply.go, whose rule is
-- documented in the README ("The merge rule").
CREATE TABLE device_commands (
    command_id      text        PRIMARY KEY,
    device_id       text,
    product_id      text,
    app_id          text,
    gateway_id      text,
    node_id         text,
    tags            jsonb,
    status          text        NOT NULL,
    -- Rank of status in the lifecycle (PENDING 0, SENT 1, DELIVERED 2,
    -- terminal 3). Kept as a column so the merge rule is one row comparison.
    status_rank     smallint    NOT NULL,
    created_time    timestamptz,
    sent_time       timestamptz,
    delivered_time  timestamptz,
    response_time   timestamptz,
    result          jsonb,
    last_event_time timestamptz NOT NULL,
    -- Digest of the notification that set status/result; the final
    -- tie-break of the merge rule, so equal (rank, time) pairs still resolve
    -- the same way whatever the arrival order.
    last_event_key  bytea       NOT NULL,
    last_request_id text,
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- A device's commands, newest first.
CREATE INDEX device_commands_device_created_idx
    ON device_commands (device_id, created_time DESC NULLS LAST);
-- Commands by status (e.g. everything still SENT), oldest activity first.
CREATE INDEX device_commands_status_idx
    ON device_commands (status, last_event_time);

-- History: one row per distinct notification. event_key is a digest of the
-- notification's content (see notification.Notification.Key), so a
-- redelivered or duplicated notification adds no second row.
CREATE TABLE device_command_events (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    command_id  text        NOT NULL,
    event_key   bytea       NOT NULL,
    status      text        NOT NULL,
    event_time  timestamptz NOT NULL,
    request_id  text,
    source      text        NOT NULL,
    payload     jsonb       NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (command_id, event_key)
);

CREATE INDEX device_command_events_command_time_idx
    ON device_command_events (command_id, event_time);

-- Messages cmdtrack could not use. The body is kept byte for byte so that
-- `cmdtrack replay` can feed it through a newer decoder later. body_sha256
-- makes a redelivered poison message land once.
CREATE TABLE dead_letters (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at    timestamptz NOT NULL DEFAULT now(),
    source         text        NOT NULL,
    reason_class   text        NOT NULL,
    reason         text        NOT NULL,
    body           bytea       NOT NULL,
    body_sha256    bytea       NOT NULL UNIQUE,
    -- AMQP message id, content type, delivery annotations: whatever helps a
    -- human find the sender of a bad message.
    properties     jsonb,
    replay_count   integer     NOT NULL DEFAULT 0,
    last_replay_at timestamptz
);

CREATE INDEX dead_letters_received_at_idx ON dead_letters (received_at);
