-- device_commands_device_created_idx (migration 001) is dropped: every row
-- version of device_commands wrote an entry into it (none of the table's
-- updates is HOT: status and last_event_time are indexed), 53.9 bytes of
-- WAL per notification of make bench's stream and 65 bytes of disk per
-- command (docs/benchmarks.md, "Where a notification's cost goes"). Its last
-- reader was the device page's sample of the device's newest commands, which
-- now reads device_commands_device_status_day_idx (migration 012) head by
-- head, as /commands?device= does, in the order the page shows.
DROP INDEX IF EXISTS device_commands_device_created_idx;
