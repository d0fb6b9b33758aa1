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

// ReplayResult counts what Replay did with the dead letters it saw.
type ReplayResult struct {
	Applied      int // decoded and stored; removed from dead_letters
	Skipped      int // now recognised as another resource; removed
	StillFailing int // kept, with the decoder's new reason
}

// Replay feeds every dead letter through the current decoder
// (ingest.Classify, with lim) once, as the message it was. Those that now decode are applied and deleted in the same
// transaction; those that do not keep their row with the new reason.
//
// Each dead letter is handled in its own transaction under FOR UPDATE SKIP
// LOCKED, so Replay is safe while workers run and while another replay runs.
// ctx bounds the whole replay; what was done before it ended stays done.
func (s *Store) Replay(ctx context.Context, lim ingest.Limits) (ReplayResult, error) {
	var res ReplayResult
	var lastID int64
	for {
		id, outcome, err := s.replayOne(ctx, lastID, lim)
		if err != nil {
			return res, err
		}
		if id == 0 {
			return res, nil
		}
		lastID = id
		switch outcome {
		case replayApplied:
			res.Applied++
		case replaySkipped:
			res.Skipped++
		default:
			res.StillFailing++
		}
	}
}

type replayOutcome int

const (
	replayApplied replayOutcome = iota
	replaySkipped
	replayFailing
)

func (s *Store) replayOne(ctx context.Context, after int64, lim ingest.Limits) (int64, replayOutcome, error) {
	var (
		id      int64
		outcome replayOutcome
		retry   *ingest.DeadLetter
	)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var (
			source, class, reason string
			body                  []byte
			receivedAt            time.Time
			truncated             bool
		)
		err := tx.QueryRow(ctx, `
			SELECT id, source, reason_class, reason, body, received_at, coalesce(body_length > length(body), false)
			FROM dead_letters
			WHERE id > $1 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED`, after).Scan(&id, &source, &class, &reason, &body, &receivedAt, &truncated)
		if errors.Is(err, pgx.ErrNoRows) {
			id = 0
			return nil
		}
		if err != nil {
			return err
		}
		it := ingest.Classify(body, source, receivedAt, lim)
		if truncated {
			// Only a prefix was kept: the message can never decode again.
			it = ingest.Unusable(source, body, notification.Class(class), reason)
		}
		b := &pgx.Batch{}
		switch {
		case it.Notification != nil:
			outcome = replayApplied
			queueWrites(b, []ingest.Item{it}, nil)
			b.Queue(`DELETE FROM dead_letters WHERE id = $1`, id)
		case it.DeadLetter != nil:
			outcome = replayFailing
			queueFailing(b, id, it.DeadLetter)
		default:
			outcome = replaySkipped
			b.Queue(`DELETE FROM dead_letters WHERE id = $1`, id)
		}
		err = tx.SendBatch(ctx, b).Close()
		if IsDataError(err) && outcome == replayApplied {
			// Decodes now, but PostgreSQL still refuses it: keep it, saying so.
			retry = &ingest.DeadLetter{Class: notification.ClassRejected, Reason: "PostgreSQL rejected the notification: " + err.Error()}
		}
		return err
	})
	if retry != nil {
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			b := &pgx.Batch{}
			queueFailing(b, id, retry)
			return tx.SendBatch(ctx, b).Close()
		})
		outcome = replayFailing
	}
	if err != nil {
		return 0, 0, fmt.Errorf("replay dead letter %d: %w", id, err)
	}
	return id, outcome, nil
}

func queueFailing(b *pgx.Batch, id int64, d *ingest.DeadLetter) {
	b.Queue(`UPDATE dead_letters
		SET reason_class = $2, reason = $3, replay_count = replay_count + 1, last_replay_at = now()
		WHERE id = $1`, id, string(d.Class), storable(d.Reason))
}
