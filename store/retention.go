package store

import (
	"context"
	"fmt"
	"time"
)

// Retention says how long rows are kept; zero keeps them forever.
type Retention struct {
	// History bounds device_command_events by received_at. It is the table
	// that grows fastest (one row per notification).
	History time.Duration
	// DeadLetters bounds dead_letters by received_at.
	DeadLetters time.Duration
	// Commands bounds device_commands by last_event_time, for deployments
	// that only care about recent commands.
	Commands time.Duration
}

// PruneResult counts deleted rows.
type PruneResult struct {
	History, DeadLetters, Commands int64
}

// pruneBatch keeps each delete short, so retention never holds locks or
// bloats WAL the way one huge DELETE would.
const pruneBatch = 5000

// Prune deletes rows older than the retention allows, in short batches.
// A late redelivery of a pruned notification adds its history row again;
// the command row is not affected, as the merge is idempotent.
// ctx bounds the whole prune; batches already deleted stay deleted.
func (s *Store) Prune(ctx context.Context, r Retention, now time.Time) (PruneResult, error) {
	var res PruneResult
	var err error
	if r.History > 0 {
		res.History, err = s.pruneTable(ctx, "device_command_events", "received_at", now.Add(-r.History))
		if err != nil {
			return res, err
		}
	}
	if r.DeadLetters > 0 {
		res.DeadLetters, err = s.pruneTable(ctx, "dead_letters", "received_at", now.Add(-r.DeadLetters))
		if err != nil {
			return res, err
		}
	}
	if r.Commands > 0 {
		res.Commands, err = s.pruneTable(ctx, "device_commands", "last_event_time", now.Add(-r.Commands))
	}
	return res, err
}

func (s *Store) pruneTable(ctx context.Context, table, column string, before time.Time) (int64, error) {
	key := "id"
	if table == "device_commands" {
		key = "command_id"
	}
	// table, column and key are constants chosen above, never input.
	q := fmt.Sprintf(`DELETE FROM %[1]s WHERE %[3]s IN (
		SELECT %[3]s FROM %[1]s WHERE %[2]s < $1 LIMIT %[4]d FOR UPDATE SKIP LOCKED)`, table, column, key, pruneBatch)
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
