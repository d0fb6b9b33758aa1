-- Device presence (README, "Device presence"): one row per device, from the
-- device.status notifications that share the queue with command statuses.
-- Rows are only ever written through the merge upsert in store/presence.go.
CREATE TABLE device_presence (
    device_id         text        PRIMARY KEY,
    status            text        NOT NULL,
    -- When the winning change happened (status_update_time, else its event
    -- time); the latest change wins.
    status_since      timestamptz NOT NULL,
    -- Digest of the winning notification: the tie-break between changes of
    -- the same time, so the result does not depend on arrival order.
    last_event_key    bytea       NOT NULL,
    last_event_time   timestamptz NOT NULL,
    last_request_id   text,
    -- The latest of every change's last_online_time and of every ONLINE
    -- change's time; the latest OFFLINE change's time.
    last_online_time  timestamptz,
    last_offline_time timestamptz,
    product_id        text,
    app_id            text,
    gateway_id        text,
    node_id           text,
    tags              jsonb,
    first_seen_at     timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- The views gain the device's status, after their existing columns.
CREATE OR REPLACE VIEW command_durations AS
SELECT c.command_id, c.device_id, c.product_id, c.app_id, c.status, c.created_time,
       c.sent_time - c.created_time         AS queued_for,
       c.delivered_time - c.sent_time       AS delivery_took,
       c.response_time - c.delivered_time   AS device_took,
       coalesce(c.response_time, c.last_event_time) - c.created_time AS total,
       c.last_event_time, c.result,
       p.status       AS device_status,
       p.status_since AS device_status_since
FROM device_commands c
LEFT JOIN device_presence p ON p.device_id = c.device_id;

-- stuck_commands as migration 008 left it (the horizon a scalar subquery,
-- read through device_commands_open_idx), with the device's status.
CREATE OR REPLACE VIEW stuck_commands AS
SELECT c.command_id, c.device_id, c.product_id, c.status, c.created_time, c.last_event_time,
       now() - c.last_event_time AS stuck_for,
       p.status       AS device_status,
       p.status_since AS device_status_since
FROM device_commands c
LEFT JOIN device_presence p ON p.device_id = c.device_id
WHERE c.status IN ('SENT', 'DELIVERED')
  AND c.last_event_time > now() - (SELECT stuck_horizon FROM cmdtrack_settings);
