-- Synchronous downlinks sent through cmdtrack (README, "Synchronous commands
-- and property sets"): CreateCommand (`cmdtrack send -sync`) and
-- UpdateProperties (`cmdtrack send -properties`). The platform forwards
-- nothing for them; the device's answer, or an error, comes back in the API
-- response only. So cmdtrack records each call itself: a row before the
-- call (PENDING), so that a crash between the call and its answer leaves a
-- row, not a gap, and the outcome once the answer (or the error) is in.
-- A call made by another program leaves no trace anywhere cmdtrack can see.
--
-- Written only through the merge upsert of the store's call writer, by the
-- commands' rule: PENDING 0, final (SUCCESSFUL, FAILED, TIMEOUT, ERROR) 1,
-- then the later event, then the key.
CREATE TABLE device_calls (
    -- Chosen by cmdtrack before the call (a UUID).
    call_id         text        PRIMARY KEY,
    -- command (CreateCommand) or properties (UpdateProperties).
    call_kind       text        NOT NULL,
    device_id       text        NOT NULL,
    product_id      text,
    service_id      text,
    command_name    text,
    -- What was sent: the command's paras, or the property set's services.
    request         jsonb,
    status          text        NOT NULL,
    status_rank     smallint    NOT NULL,
    -- The platform's command id (CreateCommand's answer).
    command_id      text,
    -- The device's answer (response), as the API returned it.
    response        jsonb,
    -- The API's HTTP status and error body, or for a transport error (no
    -- answer at all) error_code 'transport' and the error's text.
    http_status     integer,
    error_code      text,
    error_msg       text,
    sent_time       timestamptz,
    finished_time   timestamptz,
    last_event_time timestamptz NOT NULL,
    last_event_key  bytea       NOT NULL,
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- A device's calls, newest first (the device page).
CREATE INDEX device_calls_device_idx ON device_calls (device_id, sent_time DESC, call_id);
