package console

import (
	"context"
	"errors"
	"fmt"

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
