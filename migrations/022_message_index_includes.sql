-- Device message WAL (issue 28: a message costs no more WAL per
-- notification than a command; docs/benchmarks.md, "Device message WAL").
-- Every change of a message's status is a new row version (the status is
-- indexed, so no update is HOT), and each version writes an entry in every
-- index of device_messages: the width of an entry is paid on every
-- notification that moves a message, and again in the index's page splits.
--
-- Migration 018 widened two indexes with INCLUDE columns so that the
-- overview and /outcomes counted messages per product, status and day by
-- index-only scans. Since migration 020 they read the rollup
-- (message_outcomes_hourly and _daily) instead, as the commands' pages
-- read theirs; console/plans_messages_test.go checks that no plan of
-- theirs reads device_messages. The included columns served nothing else,
-- so the two indexes go back to their keys:
--
-- device_messages_day_idx: INCLUDE (product_id, status, pending_time,
-- first_seen_at) served the counts, and then the rollup's refresh (upkeep,
-- every minute: the last few days' messages, store/rollup.go) as an
-- index-only scan. It still serves what it served before 018: retention by
-- day, the rollup's refresh (now reading the rows it finds, as the
-- commands' refresh does through device_commands_day_idx), and the list
-- without a filter.
--
-- device_messages_product_status_day_idx: INCLUDE (pending_time,
-- first_seen_at) served one product's counts per day. It still serves the
-- lists by product, and by product and status.
--
-- Measured on make bench's msgs-only drain (pg_waldump, this database's
-- relations only): the two indexes wrote 339 B per notification, 259 B
-- without these columns. Rebuilding holds device_messages'
-- write lock for as long as it takes (at 10 M messages, as 018's did):
-- run `cmdtrack migrate` before the new workers start.
DROP INDEX device_messages_day_idx;
CREATE INDEX device_messages_day_idx ON device_messages ((coalesce(pending_time, first_seen_at)));

DROP INDEX device_messages_product_status_day_idx;
CREATE INDEX device_messages_product_status_day_idx
    ON device_messages (product_id, status, (coalesce(pending_time, first_seen_at)), device_id, message_id);
