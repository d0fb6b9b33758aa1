-- "Stuck" has one definition (README, "Schema and queries"): a command not
-- final (PENDING, SENT or DELIVERED) that has not moved for longer than a
-- quiet time, and moved within cmdtrack_settings.stuck_horizon. The
-- console, the gauge cmdtrack_commands_stuck and reconcile's threshold run
-- all read it through stuck_commands(quiet); they differed before (the
-- console left PENDING out, the gauge the horizon).
--
-- PENDING joins the view: a command the platform holds for an offline
-- device is still waiting for news, and one whose final notification was
-- lost stays PENDING for ever unless reconcile asks about it. The index of
-- the open commands takes PENDING too, so that every form of the view is
-- still read from it alone. Rebuilding it holds device_commands' write lock
-- for as long as it takes (a read of every command; docs/benchmarks.md);
-- run `cmdtrack migrate` before the new workers start.

DROP INDEX device_commands_open_idx;
CREATE INDEX device_commands_open_idx ON device_commands (last_event_time, command_id)
    INCLUDE (device_id, product_id, status, created_time)
    WHERE status IN ('PENDING', 'SENT', 'DELIVERED');

-- Commands not final that moved within the stuck horizon, with how long
-- since they last moved and their device's status.
CREATE OR REPLACE VIEW stuck_commands AS
SELECT c.command_id, c.device_id, c.product_id, c.status, c.created_time, c.last_event_time,
       now() - c.last_event_time AS stuck_for,
       p.status       AS device_status,
       p.status_since AS device_status_since
FROM device_commands c
LEFT JOIN device_presence p ON p.device_id = c.device_id
WHERE c.status IN ('PENDING', 'SENT', 'DELIVERED')
  AND c.last_event_time > now() - (SELECT stuck_horizon FROM cmdtrack_settings);

-- The stuck commands: those of the view quiet for longer than quiet. The
-- bound is on last_event_time, so the index serves it. A single SELECT,
-- STABLE and not STRICT: the planner inlines it into the query that calls
-- it, so an ORDER BY last_event_time LIMIT over it reads only its rows.
CREATE FUNCTION stuck_commands(quiet interval) RETURNS SETOF stuck_commands
LANGUAGE sql STABLE AS $$
    SELECT * FROM stuck_commands WHERE last_event_time < now() - quiet
$$;
