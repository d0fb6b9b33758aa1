-- Views for the everyday questions operators ask (README, "Command history in
-- SQL"). They hold no data; replace them freely in later migrations.

-- Each command with the time each step took.
CREATE VIEW command_durations AS
SELECT command_id, device_id, product_id, app_id, status, created_time,
       sent_time - created_time       AS queued_for,
       delivered_time - sent_time     AS delivery_took,
       response_time - delivered_time AS device_took,
       coalesce(response_time, last_event_time) - created_time AS total,
       last_event_time, result
FROM device_commands;

-- Commands still on their way (SENT or DELIVERED), with how long since they
-- last moved. Filter on stuck_for with the threshold you need.
CREATE VIEW stuck_commands AS
SELECT command_id, device_id, product_id, status, created_time, last_event_time,
       now() - last_event_time AS stuck_for
FROM device_commands
WHERE status IN ('SENT', 'DELIVERED');

-- Outcomes per product per day (UTC, by creation time).
CREATE VIEW product_daily_outcomes AS
SELECT product_id,
       (date_trunc('day', coalesce(created_time, last_event_time) AT TIME ZONE 'UTC'))::date AS day,
       count(*)                                       AS commands,
       count(*) FILTER (WHERE status = 'SUCCESSFUL')  AS successful,
       count(*) FILTER (WHERE status = 'FAILED')      AS failed,
       count(*) FILTER (WHERE status = 'TIMEOUT')     AS timed_out,
       count(*) FILTER (WHERE status = 'EXPIRED')     AS expired,
       count(*) FILTER (WHERE status = 'CANCELED')    AS canceled,
       round(avg((status = 'FAILED')::int), 4)        AS failure_rate,
       round(avg((status = 'TIMEOUT')::int), 4)       AS timeout_rate
FROM device_commands
GROUP BY 1, 2;

-- One command's full timeline, step by step, with the gap since the step before.
CREATE VIEW command_timeline AS
SELECT command_id, event_time, status, request_id, source, received_at,
       event_time - lag(event_time) OVER (PARTITION BY command_id ORDER BY event_time, id) AS since_previous
FROM device_command_events;

-- Retention deletes history by age; this keeps those deletes cheap.
CREATE INDEX device_command_events_received_at_idx ON device_command_events (received_at);
