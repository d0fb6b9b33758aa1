-- When each queue's messages were last settled, saved every minute by the
-- workers, so that one started after a long gap (cmdtrack itself down for
-- longer than IoTDA keeps a queue's backlog, 24 hours) can say that
-- notifications may have been lost, and when (README, "Repairing gaps").
CREATE TABLE queue_watermarks (
    queue       text        PRIMARY KEY,
    consumed_at timestamptz NOT NULL
);
