-- Commands per hour (UTC, by creation), product and status: the console's
-- overview (README, "The console") shows the last 24 hours and the last 7
-- days as sliding windows, to the hour, from it; the daily rollup could only
-- give "today" and whole days. Upkeep refreshes it with command_outcomes_daily,
-- in the same transaction and from the same scan (store/rollup.go), and keeps
-- eight days of it. A few products make a few thousand rows.
CREATE TABLE command_outcomes_hourly (
    hour       timestamptz NOT NULL, -- the start of the hour, UTC
    product_id text        NOT NULL, -- '' for commands without one
    status     text        NOT NULL,
    commands   bigint      NOT NULL,
    PRIMARY KEY (hour, product_id, status)
);
-- Through the index on a command's creation day, so the cost is that of the
-- last eight days' commands, not of the table.
INSERT INTO command_outcomes_hourly (hour, product_id, status, commands)
SELECT date_trunc('hour', coalesce(created_time, first_seen_at), 'UTC'), coalesce(product_id, ''), status, count(*)
FROM device_commands
WHERE coalesce(created_time, first_seen_at) >= date_trunc('hour', now(), 'UTC') - interval '8 days'
GROUP BY 1, 2, 3;
