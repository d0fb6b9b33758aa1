-- The device message history keeps each notification's header once, as the
-- command history does since migration 027 (issue 28: a message costs no
-- more WAL per notification than a command; the header was about 180 bytes
-- of every row). notification_headers serves both histories: a header is
-- the device's, whichever kind of notification brought it, and its id is a
-- hash of its text alone. A message history row whose payload holds one
-- stores the payload without it; header_id and header_at say how to put it
-- back, byte for byte.
--
-- payload is renamed stored_payload, so that a query reading it as the whole
-- notification fails instead of reading a payload without its header: read
-- the view message_events (its payload column is the notification as
-- received, always), or put the header back as that view does.

-- Metadata only, whatever the history's size: a rename, and two columns
-- without a default (NULL in every existing row: stored whole, and read
-- whole through the view).
ALTER TABLE device_message_events RENAME COLUMN payload TO stored_payload;
ALTER TABLE device_message_events ADD COLUMN header_id bigint, ADD COLUMN header_at integer;

-- The history with every payload as received, as command_events is. Reading
-- no payload, it reads device_message_events alone (the join is removed:
-- its key is unique).
CREATE VIEW message_events AS
SELECT e.device_id, e.message_id, e.event_key, e.status, e.event_time, e.request_id, e.source,
       CASE WHEN e.header_at IS NULL THEN e.stored_payload
            ELSE overlay(e.stored_payload PLACING h.header FROM e.header_at FOR 0) END AS payload,
       e.received_at, e.header_id, e.header_at
FROM device_message_events e
LEFT JOIN notification_headers h ON h.id = e.header_id;
