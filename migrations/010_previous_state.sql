-- What a command's row was before the last write that changed it, so that
-- the write itself can say so (RETURNING sees only the new row). The
-- outcome metrics (README, "Command outcomes") count each change once from
-- it, with no second statement: before this, every batch inserted its new
-- commands first and locked its existing ones (SELECT ... FOR UPDATE) to
-- read them, which cost PostgreSQL a third of its CPU per notification.
--
-- Set by the merge upsert in the same UPDATE, from the row version it
-- replaces (the latest, locked), so it is exact with any number of writers.
-- Both NULL: the last write created the row. Adding nullable columns
-- without a default rewrites nothing, at any table size.
ALTER TABLE device_commands
    -- The status before the last change.
    ADD COLUMN previous_status text,
    -- Which stage times were known before the last change: 1 created_time,
    -- 2 sent_time, 4 delivered_time, 8 response_time.
    ADD COLUMN previous_known smallint;
