-- The history becomes a table partitioned by event time (README, "Growth and
-- retention"): retention drops whole partitions (no DELETE, no dead tuples),
-- and cmdtrack creates partitions ahead and back (store/partitions.go).
--
-- The partition key is the event time because it is part of a notification's
-- content: a redelivered notification has the same event time, so it lands in
-- the same partition, where the unique key (command_id, event_key,
-- event_time) rejects it, whichever day it is redelivered on. A legacy
-- callback carries no event time and is timed by its first receipt, which
-- device_command_receipts keeps: its copies take that time, and so the same
-- partition, too.
--
-- Also gone: the id column and three of the four indexes a history row paid
-- for (the primary key, (command_id, event_time) and received_at); the unique
-- key serves one command's timeline. The payload is kept as text, byte for
-- byte as received, instead of jsonb that PostgreSQL parsed on every insert
-- (cast it, payload::jsonb, to query into it).
--
-- Cost on an existing database: the history is copied once into the new table
-- and the old one dropped, in this migration's transaction, so it needs that
-- much free disk meanwhile and holds an exclusive lock on the history until it
-- commits (measured: see docs/benchmarks.md, "Migrating an existing history").
-- Run `cmdtrack migrate` (or the Kubernetes Job) before the new workers start.

DROP VIEW command_timeline;
ALTER TABLE device_command_events RENAME TO device_command_events_unpartitioned;

CREATE TABLE device_command_events (
    command_id  text        NOT NULL,
    event_key   bytea       NOT NULL,
    status      text        NOT NULL,
    event_time  timestamptz NOT NULL,
    request_id  text,
    source      text        NOT NULL,
    payload     text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT device_command_events_key UNIQUE (command_id, event_key, event_time)
) PARTITION BY RANGE (event_time);

-- Rows whose time has no partition (yet) land here; cmdtrack's upkeep moves
-- them into partitions it creates for them, or deletes them if retention
-- says they are too old. An insert never fails for want of a partition.
CREATE TABLE device_command_events_default PARTITION OF device_command_events DEFAULT;

-- Daily partitions for every day the existing history covers and for the
-- days around today; from then on, upkeep makes them at the configured size.
DO $$
DECLARE
    d date;
BEGIN
    FOR d IN
        SELECT DISTINCT (event_time AT TIME ZONE 'UTC')::date FROM device_command_events_unpartitioned
        UNION
        SELECT generate_series((now() AT TIME ZONE 'UTC')::date - 1, (now() AT TIME ZONE 'UTC')::date + 3, interval '1 day')::date
    LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF device_command_events FOR VALUES FROM (%L) TO (%L)',
            'device_command_events_' || to_char(d, 'YYYYMMDD'),
            to_char(d, 'YYYY-MM-DD') || ' 00:00:00+00', to_char(d + 1, 'YYYY-MM-DD') || ' 00:00:00+00');
    END LOOP;
END
$$;

INSERT INTO device_command_events (command_id, event_key, status, event_time, request_id, source, payload, received_at)
SELECT command_id, event_key, status, event_time, request_id, source, payload::text, received_at
FROM device_command_events_unpartitioned;

-- The first receipt of each legacy callback that carries no event time (v1
-- and NB-IoT command callbacks: a commandId, no resource), by its key. Small:
-- one row per such callback, read and written by primary key.
CREATE TABLE device_command_receipts (
    command_id text        NOT NULL,
    event_key  bytea       NOT NULL,
    event_time timestamptz NOT NULL,
    PRIMARY KEY (command_id, event_key)
);
INSERT INTO device_command_receipts (command_id, event_key, event_time)
SELECT command_id, event_key, min(event_time)
FROM device_command_events_unpartitioned
WHERE payload ? 'commandId' AND NOT payload ? 'resource' AND NOT payload ? 'notifyType'
GROUP BY 1, 2;

DROP TABLE device_command_events_unpartitioned;

-- One command's full timeline, step by step, with the gap since the step before.
CREATE VIEW command_timeline AS
SELECT command_id, event_time, status, request_id, source, received_at,
       event_time - lag(event_time) OVER (PARTITION BY command_id ORDER BY event_time, received_at, event_key) AS since_previous
FROM device_command_events;
