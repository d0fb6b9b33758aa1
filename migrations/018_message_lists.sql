-- The console's message pages (README, "The console") read a page's rows,
-- whatever their filter, as the command pages do (migrations 008 and 012):
-- /messages by device, by product, by status, by a time window and a
-- cursor, and any combination of them: the overview and /outcomes count
-- messages per product, status and day. console/plans_test.go checks every
-- combination's plan against these indexes.
--
-- A message's day is coalesce(pending_time, first_seen_at) (migration 015's
-- day index): a message is named by (device_id, message_id), the lists'
-- tie-break and, with the day, their keyset cursor.

-- A device's messages, newest first, by status: with a status in the
-- filter the page is the first rows of one backward scan: without one the
-- console reads the head of each of the four statuses' ranges and merges
-- them. A device's product, when filtered too, is checked on the device's
-- own rows (a device is of one product). Without it a device's messages
-- would be found through the day index, filtered: every newer message of
-- the fleet read for a device whose messages are old.
CREATE INDEX device_messages_device_status_day_idx
    ON device_messages (device_id, status, (coalesce(pending_time, first_seen_at)), message_id);

-- A product's messages, by status, newest first: a product alone (merged
-- per status, as a device's), a product with a status, and one product's
-- outcomes per day (one range per status, the window's entries only). A
-- rare pair (a product whose failures are few and old) would otherwise be
-- looked for through the product's or the status' messages. The day's two
-- columns are included because PostgreSQL answers from an index alone only
-- a query whose every column is in it, and an expression does not count:
-- so the counts read no row of the table.
CREATE INDEX device_messages_product_status_day_idx
    ON device_messages (product_id, status, (coalesce(pending_time, first_seen_at)), device_id, message_id)
    INCLUDE (pending_time, first_seen_at);

-- One status, newest first: /messages?status=FAILED. A rare status (few
-- TIMEOUTs) would otherwise be looked for through the day index, reading
-- every newer message.
CREATE INDEX device_messages_status_day_idx
    ON device_messages (status, (coalesce(pending_time, first_seen_at)), device_id, message_id);

-- The day index holds the product and the status too, and the day's
-- columns (see above): the overview (the last 7 days by hour) and
-- /outcomes (by day) count messages per product and status by an
-- index-only scan of the window's entries, with no rollup to refresh. It still serves what it served: retention by day, and the
-- list without a filter (newest first, ties sorted). Replaced rather than
-- added, so that a message's update writes no more index entries than
-- before for it.
DROP INDEX device_messages_day_idx;
CREATE INDEX device_messages_day_idx ON device_messages ((coalesce(pending_time, first_seen_at)))
    INCLUDE (product_id, status, pending_time, first_seen_at);

-- The cost: an update that moves a message (its status and last event
-- change, and the open index is partial on status, so it is never HOT) adds
-- an entry to every index of the table: six now (the key, the open
-- messages, the day, and the three above), where device_commands has eight.
-- Building them holds device_messages' write lock for as long as it takes,
-- the table is new (migration 015), so run `cmdtrack migrate` before it
-- fills, or before the new workers start.
