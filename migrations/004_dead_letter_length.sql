-- A message larger than CMDTRACK_MAX_BODY_BYTES keeps only its first 64 KiB
-- in body (a storm of junk must not fill the disk); body_length is the whole
-- message's length and body_sha256 its digest, so that a redelivery still
-- lands once. NULL (rows from before) means body is the whole message.
ALTER TABLE dead_letters ADD COLUMN body_length bigint;
