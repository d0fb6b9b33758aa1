package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/notification"
)

// StoredDeadLetter is a dead letter as dead_letters holds it.
type StoredDeadLetter struct {
	ID         int64
	Source     string
	Class      notification.Class
	Reason     string
	Body       []byte
	ReceivedAt time.Time
	// Truncated: Body holds only the first bytes of the message (too_large).
	Truncated bool
}

// ReplaceDeadLetter takes the first dead letter whose id is above after,
// hands it to decide, and stores what decide made of it in its place, in
// one transaction: a notification is applied and the dead letter deleted; a
// dead letter keeps its row with the new class and reason, and one more
// replay_count; an item that is neither (another resource) deletes it. A
// notification PostgreSQL refuses is kept as rejected_by_database, as Apply
// does. It returns the dead letter's id (0 when there is none left) and
// what became of it.
//
// The dead letter is taken FOR UPDATE SKIP LOCKED, so replaying is safe
// while workers run and while another replay runs. ctx bounds the call.
func (s *Store) ReplaceDeadLetter(ctx context.Context, after int64, decide func(StoredDeadLetter) ingest.Item) (int64, ingest.Result, error) {
	var (
		dl    StoredDeadLetter
		res   ingest.Result
		retry *ingest.DeadLetter
	)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var class string
		err := tx.QueryRow(ctx, `
			SELECT id, source, reason_class, reason, body, received_at, coalesce(body_length > length(body), false)
			FROM dead_letters
			WHERE id > $1 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED`, after).
			Scan(&dl.ID, &dl.Source, &class, &dl.Reason, &dl.Body, &dl.ReceivedAt, &dl.Truncated)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		dl.Class = notification.Class(class)
		it := decide(dl)
		res = it.Result()
		b := &pgx.Batch{}
		switch res.Outcome {
		case ingest.Applied:
			queueWrites(b, []ingest.Item{it}, nil)
			b.Queue(`DELETE FROM dead_letters WHERE id = $1`, dl.ID)
		case ingest.DeadLettered:
			queueFailing(b, dl.ID, it.DeadLetter)
		default:
			b.Queue(`DELETE FROM dead_letters WHERE id = $1`, dl.ID)
		}
		err = tx.SendBatch(ctx, b).Close()
		if IsDataError(err) && res.Outcome == ingest.Applied {
			// Decodes now, but PostgreSQL still refuses it: keep it, saying so.
			retry = &ingest.DeadLetter{Class: notification.ClassRejected, Reason: "PostgreSQL rejected the notification: " + err.Error()}
		}
		return err
	})
	if retry != nil {
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			b := &pgx.Batch{}
			queueFailing(b, dl.ID, retry)
			return tx.SendBatch(ctx, b).Close()
		})
		res = ingest.Result{Outcome: ingest.DeadLettered, DeadLetter: retry}
	}
	if err != nil {
		return 0, ingest.Result{}, interpretError(fmt.Errorf("replay dead letter %d: %w", dl.ID, err))
	}
	return dl.ID, res, nil
}

func queueFailing(b *pgx.Batch, id int64, d *ingest.DeadLetter) {
	b.Queue(`UPDATE dead_letters
		SET reason_class = $2, reason = $3, replay_count = replay_count + 1, last_replay_at = now()
		WHERE id = $1`, id, string(d.Class), storable(d.Reason))
}
