package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

func loadDeadLetter(ctx context.Context, db *pgxpool.Pool, id int64) (*DeadLetter, error) {
	var d DeadLetter
	var body, sum []byte
	err := db.QueryRow(ctx, `SELECT id, received_at, source, reason_class, reason, coalesce(body_length, length(body)),
		length(body), body, body_sha256, properties, replay_count, last_replay_at FROM dead_letters WHERE id = $1`, id).
		Scan(&d.ID, &d.ReceivedAt, &d.Source, &d.ReasonClass, &d.Reason, &d.BodyLength, &d.BodyStored, &body, &sum,
			&d.Properties, &d.ReplayCount, &d.LastReplay)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read dead letter: %w", err)
	}
	d.BodySHA256 = fmt.Sprintf("%x", sum)
	d.setBody(body, false)
	return &d, nil
}

var deadLetterPage = endpoint[*DeadLetter]{template: "deadletter", title: "Dead letter", nav: "dead-letters", thing: "dead letter",
	subject: func(d *DeadLetter) string { return strconv.FormatInt(d.ID, 10) },
	load: func(ctx context.Context, db *pgxpool.Pool, r *http.Request, _ time.Time) (*DeadLetter, error) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil {
			return nil, errNotFound // "No dead letter with this id is stored."
		}
		return loadDeadLetter(ctx, db, id)
	}}
