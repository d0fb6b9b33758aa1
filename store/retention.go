package store

import (
	"context"
	"fmt"
	"time"
)

// Retention says how long rows are kept; zero keeps them forever. The
// histories, the tables that grow fastest, are kept by partitions instead
// (MaintainPartitions).
type Retention struct {
	// DeadLetters bounds dead_letters by received_at.
	DeadLetters time.Duration
	// Commands bounds device_commands, device_messages and device_calls,
	// for deployments that only care about recent ones: a command goes once
	// it was created (or first heard of) and last moved before the limit, a
	// message once it was first pending (or first heard of) and last moved
	// before it, a call once it was sent (or first recorded) and last moved
	// before it.
	Commands time.Duration
}

// PruneResult counts deleted rows.
type PruneResult struct {
	DeadLetters, Commands, Messages, Calls int64
}

// pruneBatch keeps each delete short, so retention never holds locks or
// bloats WAL the way one huge DELETE would.
const pruneBatch = 5000

// kept is a kind's table of rows that command retention prunes.
type kept struct {
	table string
	// key is its primary key's columns.
	key string
	// day is the indexed expression of the time a row began (its index
	// serves the prune).
	day string
	// finalRank is the status_rank of its final statuses: a row pruned with
	// one leaves a tombstone in tombstones, keyed like the table, so that
	// heard of again it is not counted as finished again. A kind nothing
	// hears of again (a call: only its sender writes it) has none ("").
	finalRank  int
	tombstones string
	// count is where its pruned rows are counted.
	count func(*PruneResult) *int64
}

// keptRows are the kinds' tables CMDTRACK_RETENTION_COMMANDS bounds, one
// line each.
var keptRows = []kept{
	{table: "device_commands", key: "command_id", day: "coalesce(created_time, first_seen_at)",
		finalRank: 3, tombstones: "command_tombstones", count: func(r *PruneResult) *int64 { return &r.Commands }},
	{table: "device_messages", key: "device_id, message_id", day: "coalesce(pending_time, first_seen_at)",
		finalRank: 1, tombstones: "message_tombstones", count: func(r *PruneResult) *int64 { return &r.Messages }},
	{table: "device_calls", key: "call_id", day: "coalesce(sent_time, first_seen_at)",
		count: func(r *PruneResult) *int64 { return &r.Calls }},
}

// pruneSQL deletes at most pruneBatch of k's rows that began and last moved
// before $1 (the index on the row's day serves it; a row that still moves,
// last_event_time, is kept). A final one leaves a tombstone (migrations 013,
// 017); its row is locked, so its status is the one deleted.
func (k kept) pruneSQL() string {
	cols, tombstones := k.key, ""
	if k.tombstones != "" {
		cols += ", status, status_rank"
		tombstones = fmt.Sprintf(`, tombstones AS (
			INSERT INTO %[1]s (%[2]s, status)
			SELECT %[2]s, status FROM doomed WHERE status_rank = %[3]d ORDER BY %[2]s
			ON CONFLICT (%[2]s) DO UPDATE SET status = EXCLUDED.status, pruned_at = now()
		)`, k.tombstones, k.key, k.finalRank)
	}
	return fmt.Sprintf(`WITH doomed AS (
			SELECT %[2]s FROM %[1]s
			WHERE %[3]s < $1 AND last_event_time < $1
			LIMIT %[4]s FOR UPDATE SKIP LOCKED
		)%[5]s
		DELETE FROM %[1]s WHERE (%[6]s) IN (SELECT %[6]s FROM doomed)`,
		k.table, cols, k.day, pruneLimit, tombstones, k.key)
}

// tombstonesSQL deletes at most pruneBatch of k's tombstones older than $1
// (the BRIN index on pruned_at serves it).
func (k kept) tombstonesSQL() string {
	return fmt.Sprintf(`DELETE FROM %[1]s WHERE (%[2]s) IN (
			SELECT %[2]s FROM %[1]s WHERE pruned_at < $1 LIMIT %[3]s)`, k.tombstones, k.key, pruneLimit)
}

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
	if r.Commands <= 0 {
		return res, nil
	}
	for _, k := range keptRows {
		n, err := s.pruneBatches(ctx, k.table, k.pruneSQL(), now.Add(-r.Commands))
		*k.count(&res) = n
		if err != nil {
			return res, err
		}
		if k.tombstones == "" {
			continue
		}
		// Tombstones are kept one more retention period.
		if _, err := s.pruneBatches(ctx, k.tombstones, k.tombstonesSQL(), now.Add(-r.Commands)); err != nil {
			return res, err
		}
	}
	return res, nil
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
