-- What only a command's creation knows, recorded by `cmdtrack send` from the
-- async-command API's answer. Status notifications leave these NULL; the
-- merge keeps any known value (store/apply.go).
ALTER TABLE device_commands
    ADD COLUMN service_id    text,
    ADD COLUMN command_name  text,
    ADD COLUMN paras         jsonb,
    ADD COLUMN send_strategy text,
    ADD COLUMN expire_time   integer;
