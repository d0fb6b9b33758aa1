-- Device message WAL, round two (issue 28: a message costs no more WAL per
-- notification than a command; docs/benchmarks.md, "Message WAL, round
-- two"). Every change of a message's status is a new row version (the
-- status is indexed, so no update is HOT), and each version writes an
-- entry in every index of device_messages (migration 022).
--
-- 1. Three of those indexes ended with the message's identity, (device_id,
-- message_id), as the lists' tie-break: about 45 bytes of every entry (a
-- 36-character message id and its device), where a command's tie-break is
-- its 14-character id. seq names a message in the lists instead: a number
-- the row gets once, when it is inserted, and keeps (GENERATED ALWAYS: no
-- write sets it; the merge's UPDATE does not name it). 8 bytes where the
-- identity took about 45. The console's keyset cursor for /messages is
-- then (day, seq) (before, before_seq); between messages of one day key
-- the list is ordered by seq, newest first, where it was by device and id
-- (any order would do: the cursor only needs one). A cursor of before this
-- migration (before_device, before_id) is refused with a 400 that says to
-- open the list again.
--
-- The three indexes are dropped before the column is added: adding it
-- rewrites the table and rebuilds every index it has.
DROP INDEX device_messages_device_status_day_idx, device_messages_product_status_day_idx,
    device_messages_status_day_idx;
ALTER TABLE device_messages ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;

CREATE INDEX device_messages_device_status_day_idx
    ON device_messages (device_id, status, (coalesce(pending_time, first_seen_at)), seq);

CREATE INDEX device_messages_product_status_day_idx
    ON device_messages (product_id, status, (coalesce(pending_time, first_seen_at)), seq);

-- 2. /messages?status= for a status other than DELIVERED: PENDING, FAILED
-- and TIMEOUT are the rare ones, which the day index would find only after
-- every newer message. DELIVERED is the common one (most messages end
-- there): /messages?status=DELIVERED reads the day index, newest first,
-- and stops at a page of them after skipping the few others between
-- (console/lists.go, commonStatus). So this index leaves DELIVERED out,
-- and a message's version that delivers it, most often its last, writes no
-- entry here. (The day index is then the one /messages?status=DELIVERED
-- reads: bounded while DELIVERED is a fair share of the newest messages; a
-- fleet where nearly every message fails would read many rows for a page
-- of the few delivered.)
CREATE INDEX device_messages_status_day_idx
    ON device_messages (status, (coalesce(pending_time, first_seen_at)), seq)
    WHERE status <> 'DELIVERED';

-- 3. Room on each page for a message's next row version: a version that
-- fits on its row's page is logged as what changed (the tuple's unchanged
-- prefix and suffix left out), and without the lock record of a move to
-- another page. Only pages written from now on keep the room.
ALTER TABLE device_messages SET (fillfactor = 90);

-- Measured on make bench's msgs-only drain (100,000 notifications,
-- scripts/bench-cost.sh, this schema's WAL by pg_waldump): 2,241 B per
-- notification before, 2,074 after 1, 2,030 after 2, 1,997 after 3.
--
-- The cost of running it: adding an identity column rewrites the table
-- (every row gets its number) and rebuilds the indexes left on it, then
-- the three are built, all holding device_messages' write lock (the
-- workers' merges wait), as migrations 018 and 022 did. Measured at 1 M
-- messages (1,061 MB with their indexes, on the shared test machine): 5.8 s
-- (the rewrite 3.0 s, the three indexes 0.9, 1.6 and 0.2 s); at 10 M about
-- ten times that, a minute or two (extrapolated, not run at 10 M), and
-- twice the table's size on disk meanwhile. Run `cmdtrack migrate` before
-- the new workers start.
