-- The console's lists (README, "The console") read a page's rows, whatever
-- their filter: /commands by device, by product, by status, by a time
-- window and a cursor, and any combination of them, and /dead-letters by
-- class.
--
-- A device's commands, like a product's, are read through an index that
-- holds them by status, then newest first by a command's day. With a status
-- in the filter, the page is the first rows of one backward scan, without
-- one the console reads the head of each of the eight statuses' ranges and
-- merges them (console/queries.go). So one index serves a device alone and
-- a device with a status (before, a device's commands came through the day
-- index, filtered: 1.19 s at 2 M commands for a device whose commands were
-- not among the newest), and one a product alone and a product with a
-- status (a rare pair was looked for through a product's or a status'
-- commands: 0.47 s). The index by product alone goes, the new one serves
-- all it served. Nothing else is needed for a device and a product: a
-- device's commands are of its one product.
--
-- The cost: an update of device_commands that moves a command (its status
-- and last event change, so the update is not HOT) adds an entry to every
-- index of the table. This migration adds one index (the device one, the
-- product one replaces an index of the same columns but the status), so one
-- more WAL record per such update, about 200 bytes (a 30,000-row update
-- wrote 930 bytes a row with it, 740 without, full-page images included).
-- Building them holds device_commands' write lock for as long as it takes
-- (`make bench/scale` times it): run `cmdtrack migrate` before the new
-- workers start.
CREATE INDEX device_commands_device_status_day_idx
    ON device_commands (device_id, status, (coalesce(created_time, first_seen_at)), command_id);
CREATE INDEX device_commands_product_status_day_idx
    ON device_commands (product_id, status, (coalesce(created_time, first_seen_at)), command_id);
DROP INDEX device_commands_product_day_idx;

-- Dead letters of one class, newest first, as /dead-letters?class= lists
-- them (a rare class was looked for through every dead letter). Dead
-- letters are written once (a replay's count is not indexed, so stays HOT).
CREATE INDEX dead_letters_class_received_idx ON dead_letters (reason_class, received_at, id);
