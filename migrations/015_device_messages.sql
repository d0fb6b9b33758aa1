-- Device messages (README, "Device messages"): the downlinks of MQTT fleets,
-- from device.message.status notifications. One row per message, written
-- only through the merge upsert in store/messages.go, by the commands' rule
-- with messages' ranks: PENDING 0, the final statuses (DELIVERED, FAILED,
-- TIMEOUT) 1; the greatest (status_rank, last_event_time, last_event_key)
-- wins, so PENDING never replaces a final status, between two final
-- statuses the later event wins, and the row does not depend on arrival
-- order.
--
-- A message id is unique per device only (the caller may choose it): the
-- same id on two devices is two messages.
CREATE TABLE device_messages (
    device_id       text        NOT NULL,
    message_id      text        NOT NULL,
    status          text        NOT NULL,
    status_rank     smallint    NOT NULL,
    -- Of the winning notification, with its status: FAILED's error_info.
    error_code      text,
    error_msg       text,
    name            text,
    topic           text,
    product_id      text,
    app_id          text,
    gateway_id      text,
    node_id         text,
    tags            jsonb,
    -- When the message reached each status (the body's timestamp, else the
    -- event time), from the notification of that status; the earliest if
    -- two disagree.
    pending_time    timestamptz,
    delivered_time  timestamptz,
    failed_time     timestamptz,
    timeout_time    timestamptz,
    last_event_time timestamptz NOT NULL,
    last_event_key  bytea       NOT NULL,
    last_request_id text,
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, message_id)
);

-- The messages still waiting (PENDING), oldest first: the stuck page, the
-- gauge and reconcile read them from this index alone.
CREATE INDEX device_messages_open_idx ON device_messages (last_event_time, device_id, message_id)
    INCLUDE (product_id, status, pending_time)
    WHERE status = 'PENDING';

-- The day a message belongs to (when it was first pending, or first heard
-- of): retention and the per-day outcomes read it.
CREATE INDEX device_messages_day_idx ON device_messages ((coalesce(pending_time, first_seen_at)));

-- History: one row per distinct notification, partitioned by event time as
-- the command history is (migration 005), and kept and dropped by the same
-- upkeep and retention. Upkeep makes its partitions; until it has, rows land
-- in the default partition, which upkeep empties into them.
CREATE TABLE device_message_events (
    device_id   text        NOT NULL,
    message_id  text        NOT NULL,
    event_key   bytea       NOT NULL,
    status      text        NOT NULL,
    event_time  timestamptz NOT NULL,
    request_id  text,
    source      text        NOT NULL,
    payload     text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT device_message_events_key UNIQUE (device_id, message_id, event_key, event_time)
) PARTITION BY RANGE (event_time);
CREATE TABLE device_message_events_default PARTITION OF device_message_events DEFAULT;

-- Messages waiting (PENDING) that have not moved for longer than quiet, and
-- moved within the stuck horizon, with their device's status: the one
-- definition of a stuck message, as stuck_commands(quiet) is of a command.
CREATE VIEW stuck_messages AS
SELECT m.device_id, m.message_id, m.product_id, m.status, m.name, m.pending_time, m.last_event_time,
       now() - m.last_event_time AS stuck_for,
       p.status       AS device_status,
       p.status_since AS device_status_since
FROM device_messages m
LEFT JOIN device_presence p ON p.device_id = m.device_id
WHERE m.status = 'PENDING'
  AND m.last_event_time > now() - (SELECT stuck_horizon FROM cmdtrack_settings);

CREATE FUNCTION stuck_messages(quiet interval) RETURNS SETOF stuck_messages
LANGUAGE sql STABLE AS $$
    SELECT * FROM stuck_messages WHERE last_event_time < now() - quiet
$$;
