-- device_commands_status_idx (status, last_event_time; migration 001) is
-- dropped: every row version of device_commands wrote an entry into it (none
-- of the table's updates is HOT), 57 bytes of WAL per notification of make
-- bench's stream and 31 bytes of disk (docs/benchmarks.md, "Where a
-- notification's cost goes"), to serve one reader: the newest event (the
-- gauge cmdtrack_newest_notification_age_seconds and the console overview's
-- newest_event_time, store.NewestEventSQL), one probe per status.
--
-- That reader now takes the open commands' newest from the end of
-- device_commands_open_idx (migration 014) and the final ones' from the end
-- of this index, which holds only final row versions, keyed by the time
-- alone: about one version in three of the drain's, at half the entry size.
-- Nothing already kept gives the final commands' newest exactly and bounded:
-- the history has no index on event_time (its key leads with command_id),
-- so its newest partition would be read whole; the hourly rollup counts by
-- creation hour and is a minute behind; queue_watermarks hold when a worker
-- settled a queue, not the notifications' time, and miss `cmdtrack replay`,
-- `reconcile` and HTTP push.
CREATE INDEX device_commands_final_idx ON device_commands (last_event_time)
    WHERE status NOT IN ('PENDING', 'SENT', 'DELIVERED');
DROP INDEX device_commands_status_idx;
