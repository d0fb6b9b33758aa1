-- Queries that stay fast whatever the size (README, "Schema and queries").

-- Settings the views read, one row; change them with UPDATE.
CREATE TABLE cmdtrack_settings (
    one           boolean  PRIMARY KEY DEFAULT true CHECK (one),
    -- IoTDA drops a DELIVERED command from its queue (ListAsyncCommands) once
    -- it has not moved for a platform-set period: stuck_commands shows only
    -- commands that moved within this horizon.
    stuck_horizon interval NOT NULL DEFAULT '3 days'
);
INSERT INTO cmdtrack_settings DEFAULT VALUES;

-- The day a command belongs to: when it was created, or when cmdtrack first
-- heard of it (legacy callbacks carry no creation time). Neither changes
-- once set (bar a notification with an earlier creation time), so the index
-- costs an insert per command, not a write per notification. It serves the
-- rollup's refresh and command retention.
CREATE INDEX device_commands_day_idx ON device_commands ((coalesce(created_time, first_seen_at)));

-- Outcomes per product per day, kept by cmdtrack's upkeep (store/rollup.go):
-- every minute it recomputes the last few days, the ones whose commands can
-- still change (IoTDA expires a command within two days). Older days are
-- final; they stay here even after command retention deletes their commands.
CREATE TABLE command_outcomes_daily (
    day        date   NOT NULL,
    product_id text   NOT NULL, -- '' for commands without one
    status     text   NOT NULL,
    commands   bigint NOT NULL,
    PRIMARY KEY (day, product_id, status)
);
INSERT INTO command_outcomes_daily (day, product_id, status, commands)
SELECT (coalesce(created_time, first_seen_at) AT TIME ZONE 'UTC')::date, coalesce(product_id, ''), status, count(*)
FROM device_commands
GROUP BY 1, 2, 3;

DROP VIEW product_daily_outcomes;
-- Outcomes per product per day (UTC, by creation time), from the rollup.
CREATE VIEW product_daily_outcomes AS
SELECT nullif(product_id, '')                                         AS product_id,
       day,
       sum(commands)                                                  AS commands,
       coalesce(sum(commands) FILTER (WHERE status = 'SUCCESSFUL'), 0) AS successful,
       coalesce(sum(commands) FILTER (WHERE status = 'FAILED'), 0)     AS failed,
       coalesce(sum(commands) FILTER (WHERE status = 'TIMEOUT'), 0)    AS timed_out,
       coalesce(sum(commands) FILTER (WHERE status = 'EXPIRED'), 0)    AS expired,
       coalesce(sum(commands) FILTER (WHERE status = 'CANCELED'), 0)   AS canceled,
       round(coalesce(sum(commands) FILTER (WHERE status = 'FAILED'), 0)::numeric / sum(commands), 4)  AS failure_rate,
       round(coalesce(sum(commands) FILTER (WHERE status = 'TIMEOUT'), 0)::numeric / sum(commands), 4) AS timeout_rate
FROM command_outcomes_daily
GROUP BY 1, 2;

DROP VIEW stuck_commands;
-- Commands still on their way (SENT or DELIVERED) that moved within the
-- stuck horizon, with how long since they last moved. Filter on
-- last_event_time (sargable: the (status, last_event_time) index serves it).
CREATE VIEW stuck_commands AS
SELECT c.command_id, c.device_id, c.product_id, c.status, c.created_time, c.last_event_time,
       now() - c.last_event_time AS stuck_for
FROM device_commands c, cmdtrack_settings s
WHERE c.status IN ('SENT', 'DELIVERED')
  AND c.last_event_time > now() - s.stuck_horizon;
