package console

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
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
func (h history) writePayload(ctx context.Context, db *pgxpool.Pool, ids []any, key []byte, at time.Time, start func(size int64) io.Writer) (started bool, err error) {
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return false, fmt.Errorf("read payload: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	n := len(ids)
	where := ` FROM ` + h.table + ` e WHERE ` + h.where() + ` AND event_key = $` + strconv.Itoa(n+1) + ` AND event_time = $` + strconv.Itoa(n+2)
	args := append(append([]any{}, ids...), key, at)
	var chars, size int64
	err = tx.QueryRow(ctx, `SELECT length(p), octet_length(p) FROM (SELECT `+h.payload+` AS p`+where+`) x`, args...).Scan(&chars, &size)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, errNotFound
	}
	if err != nil {
		return false, fmt.Errorf("read payload: %w", err)
	}
	w := start(size)
	var chunk []byte
	for pos := int64(1); pos <= chars; pos += payloadChunk {
		sub := `SELECT substr(` + h.payload + `, $` + strconv.Itoa(n+3) + `, $` + strconv.Itoa(n+4) + `)`
		if err := tx.QueryRow(ctx, sub+where, append(args, pos, payloadChunk)...).Scan(&chunk); err != nil {
			return true, fmt.Errorf("read payload: %w", err)
		}
		if _, err := w.Write(chunk); err != nil {
			return true, err
		}
	}
	return true, nil
}

// payloadPage serves one notification's payload whole, as it was received,
// as text: the command page shows its first characters.
var payloadPage = payloadEndpoint(commandHistory, "command", "id")

// payloadEndpoint serves the payloads of a kind's history: the thing's ids
// are the path's values named by params, in h.ids' order.
func payloadEndpoint(h history, thing string, params ...string) endpoint[stream] {
	return endpoint[stream]{thing: "notification",
		load: func(ctx context.Context, db *pgxpool.Pool, r *http.Request, _ time.Time) (stream, error) {
			key, err := hex.DecodeString(r.PathValue("key"))
			if err != nil || len(key) == 0 {
				return nil, notFound("No notification with this key is stored.")
			}
			at, err := time.Parse(time.RFC3339Nano, r.URL.Query().Get("at"))
			if err != nil {
				return nil, badRequest("at is the notification's event time (RFC 3339): follow the link on the " + thing + "'s page")
			}
			ids := make([]any, len(params))
			for i, p := range params {
				ids[i] = r.PathValue(p)
			}
			return func(w http.ResponseWriter) (bool, error) {
				return h.writePayload(ctx, db, ids, key, at, func(size int64) io.Writer {
					w.Header().Set("Content-Type", "text/plain; charset=utf-8")
					w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
					w.WriteHeader(http.StatusOK)
					return w
				})
			}, nil
		}}
}
