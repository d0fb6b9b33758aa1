-- The command history keeps each notification's header once (docs/benchmarks.md,
-- "Tried: the header once per command"). notify_data.header (app_id,
-- device_id, gateway_id, node_id, product_id, tags: about 180 bytes) is the
-- same in every notification of a device, and was a quarter of every history
-- row. Now notification_headers holds each distinct header's text once, and a
-- history row whose payload holds one stores the payload without it: the
-- header's id and the character position it was cut from say how to put it
-- back, byte for byte.
--
-- payload is renamed stored_payload, so that a query reading it as the whole
-- notification fails instead of reading a payload without its header: read
-- the view command_events (its payload column is the notification as
-- received, always), or put the header back as that view does.
--
-- id is 64 bits of a hash of the header's text (FNV-1a), chosen by the
-- writer; the writer cuts a header out only where the stored text for that id
-- is the very text it cuts, so a collision costs compression, never a byte.
-- No foreign key: checking one would lock the header's row for every history
-- row written. Nothing deletes headers (one per device and set of tags); a
-- header must not be deleted while any history row names it.
CREATE TABLE notification_headers (
    id     bigint PRIMARY KEY,
    header text   NOT NULL
);

-- Metadata only, whatever the history's size: a rename, and two columns
-- without a default (NULL in every existing row: stored whole).
ALTER TABLE device_command_events RENAME COLUMN payload TO stored_payload;
ALTER TABLE device_command_events ADD COLUMN header_id bigint, ADD COLUMN header_at integer;

-- The history with every payload as received. Reading no payload, it reads
-- device_command_events alone (the join is removed: its key is unique).
CREATE VIEW command_events AS
SELECT e.command_id, e.event_key, e.status, e.event_time, e.request_id, e.source,
       CASE WHEN e.header_at IS NULL THEN e.stored_payload
            ELSE overlay(e.stored_payload PLACING h.header FROM e.header_at FOR 0) END AS payload,
       e.received_at, e.header_id, e.header_at
FROM device_command_events e
LEFT JOIN notification_headers h ON h.id = e.header_id;
