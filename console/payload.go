package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// payloadChunk is how many characters of a payload are read at a time.
const payloadChunk = 64 << 10

// writePayload writes a notification's payload, byte for byte, in chunks
// read in one read-only transaction, so that its size bounds neither the
// console's memory nor the time before the first byte. start is called
// once the payload is found, with its length in bytes, and returns where to
// write it; an error before start is the caller's to answer.
func writePayload(ctx context.Context, db *pgxpool.Pool, id string, key []byte, at time.Time, start func(size int64) io.Writer) (started bool, err error) {
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return false, fmt.Errorf("read payload: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	const where = ` FROM device_command_events WHERE command_id = $1 AND event_key = $2 AND event_time = $3`
	var chars, size int64
	err = tx.QueryRow(ctx, `SELECT length(payload), octet_length(payload)`+where, id, key, at).Scan(&chars, &size)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, errNotFound
	}
	if err != nil {
		return false, fmt.Errorf("read payload: %w", err)
	}
	w := start(size)
	var chunk []byte
	for pos := int64(1); pos <= chars; pos += payloadChunk {
		if err := tx.QueryRow(ctx, `SELECT substr(payload, $4, $5)`+where, id, key, at, pos, payloadChunk).Scan(&chunk); err != nil {
			return true, fmt.Errorf("read payload: %w", err)
		}
		if _, err := w.Write(chunk); err != nil {
			return true, err
		}
	}
	return true, nil
}
