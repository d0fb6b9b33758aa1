-- Message retention (README, "Growth and retention"): CMDTRACK_RETENTION_COMMANDS
-- deletes device_messages rows as it deletes commands' (store/retention.go),
-- through device_messages_day_idx (migration 015).
--
-- Final messages deleted leave a tombstone here, as final commands do in
-- command_tombstones (migration 013): a notification of one of them heard
-- of again (redelivered, replayed, reconciled by id) recreates its row, but
-- the message finished already and is not to be counted as finished again.
-- A tombstone is kept one more retention period after the deletion, then
-- deleted in turn; by then such a notification would be older than twice
-- the retention. Written by retention only; read by the outcome counting for
-- messages reaching a final status.
CREATE TABLE message_tombstones (
    device_id  text        NOT NULL,
    message_id text        NOT NULL,
    status     text        NOT NULL, -- the final status it had
    pruned_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, message_id)
);
-- Rows arrive in pruned_at order: a BRIN index finds the expired ones for
-- next to nothing.
CREATE INDEX message_tombstones_pruned_at ON message_tombstones USING brin (pruned_at);
