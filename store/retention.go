package store

import (
	"context"
	"fmt"
	"time"
)

// Retention says how long rows are kept; zero keeps them forever. The
// history, the table that grows fastest, is kept by partitions instead
// (MaintainPartitions).
type Retention struct {
	// DeadLetters bounds dead_letters by received_at.
	DeadLetters time.Duration
	// Commands bounds device_commands, for deployments that only care about
	// recent commands: a command goes once it was created (or first heard
	// of) and last moved before the limit.
	Commands time.Duration
}

// PruneResult counts deleted rows.
type PruneResult struct {
	DeadLetters, Commands int64
}

// pruneBatch keeps each delete short, so retention never holds locks or
// bloats WAL the way one huge DELETE would.
const pruneBatch = 5000

// Prune deletes rows older than the retention allows, in short batches.
// ctx bounds the whole prune; batches already deleted stay deleted.
func (s *Store) Prune(ctx context.Context, r Retention, now time.Time) (PruneResult, error) {
	res, err := s.prune(ctx, r, now)
	return res, interpretError(err)
}

func (s *Store) prune(ctx context.Context, r Retention, now time.Time) (PruneResult, error) {
	var res PruneResult
	var err error
	if r.DeadLetters > 0 {
		// The received_at index serves it.
		res.DeadLetters, err = s.pruneBatches(ctx, "dead_letters", `DELETE FROM dead_letters WHERE id IN (
			SELECT id FROM dead_letters WHERE received_at < $1 LIMIT `+pruneLimit+` FOR UPDATE SKIP LOCKED)`, now.Add(-r.DeadLetters))
		if err != nil {
			return res, err
		}
	}
	if r.Commands > 0 {
		// The index on a command's day serves it; a command that still moves
		// (last_event_time) is kept. A final one leaves a tombstone, so that
		// heard of again it is not counted as finished again (migration 013);
		// its row is locked, so its status is the one deleted.
		res.Commands, err = s.pruneBatches(ctx, "device_commands", `WITH doomed AS (
			SELECT command_id, status, status_rank FROM device_commands
			WHERE coalesce(created_time, first_seen_at) < $1 AND last_event_time < $1
			LIMIT `+pruneLimit+` FOR UPDATE SKIP LOCKED
		), tombstones AS (
			INSERT INTO command_tombstones (command_id, status)
			SELECT command_id, status FROM doomed WHERE status_rank = 3 ORDER BY command_id
			ON CONFLICT (command_id) DO UPDATE SET status = EXCLUDED.status, pruned_at = now()
		)
		DELETE FROM device_commands WHERE command_id IN (SELECT command_id FROM doomed)`, now.Add(-r.Commands))
		if err != nil {
			return res, err
		}
		// Tombstones are kept one more retention period.
		_, err = s.pruneBatches(ctx, "command_tombstones", `DELETE FROM command_tombstones WHERE command_id IN (
			SELECT command_id FROM command_tombstones WHERE pruned_at < $1 LIMIT `+pruneLimit+`)`, now.Add(-r.Commands))
	}
	return res, err
}

var pruneLimit = fmt.Sprint(pruneBatch)

// pruneBatches runs the delete q (of at most pruneBatch rows) until it
// deletes fewer.
func (s *Store) pruneBatches(ctx context.Context, table, q string, before time.Time) (int64, error) {
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, q, before)
		if err != nil {
			return total, fmt.Errorf("prune %s: %w", table, err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < pruneBatch {
			return total, nil
		}
	}
}
