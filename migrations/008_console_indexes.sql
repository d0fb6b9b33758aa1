-- What the console (`cmdtrack console`, README "The console") needs to stay
-- fast at fleet size.
--
-- stuck_commands: the horizon becomes a scalar subquery, which PostgreSQL
-- evaluates once and uses as an index bound; joined as a table, it was a
-- filter applied after reading every SENT and DELIVERED command ever stored.
-- A partial index holds the commands on their way (SENT, DELIVERED) by when
-- they last moved, with every column of the view: the cookbook's form
-- (`WHERE last_event_time < ... ORDER BY last_event_time LIMIT 100`) reads
-- its 100 entries in order, and the form people write first (`WHERE
-- stuck_for > '10 minutes' ORDER BY stuck_for DESC`) reads the horizon's
-- entries alone, without visiting the table. It is small (open commands
-- only), and a command leaves it when it reaches a final status.
--
-- Two more serve /commands filtered by product or by status, newest
-- first by a command's day, whatever the product's or status' share (a rare
-- one would otherwise be looked for through the whole table). Building them
-- holds device_commands' write lock for as long as it takes (measured in
-- docs/benchmarks.md); run `cmdtrack migrate` before the new workers start.

DROP VIEW stuck_commands;
-- Commands still on their way (SENT or DELIVERED) that moved within the
-- stuck horizon, with how long since they last moved.
CREATE VIEW stuck_commands AS
SELECT c.command_id, c.device_id, c.product_id, c.status, c.created_time, c.last_event_time,
       now() - c.last_event_time AS stuck_for
FROM device_commands c
WHERE c.status IN ('SENT', 'DELIVERED')
  AND c.last_event_time > now() - (SELECT stuck_horizon FROM cmdtrack_settings);

-- Each index ends with command_id, the pages' tie-break, so that it gives
-- their order whole: the page is the first rows of one backward scan, with
-- no sort, whatever the planner guesses of a status' or a product's share
-- (a generic plan guesses one share for all; with a sort to do, a status
-- as common as FAILED took 3.7 s at 10 M).
CREATE INDEX device_commands_open_idx ON device_commands (last_event_time, command_id)
    INCLUDE (device_id, product_id, status, created_time)
    WHERE status IN ('SENT', 'DELIVERED');

CREATE INDEX device_commands_product_day_idx ON device_commands (product_id, (coalesce(created_time, first_seen_at)), command_id);
CREATE INDEX device_commands_status_day_idx ON device_commands (status, (coalesce(created_time, first_seen_at)), command_id);
