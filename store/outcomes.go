package store

import (
	"context"
	"fmt"
)

// OutcomeTotal is one series of the outcome counters: how many commands,
// device messages or synchronous calls (by Kind) reached a final status
// (KindFinished, KindMessageFinished, KindCallFinished: Status, FromStatus
// empty) or had one final status replaced by another (KindFinalChanged,
// KindMessageFinalChanged), by product.
type OutcomeTotal struct {
	Kind, ProductID, Status, FromStatus string
	// Count is how many: the length of the events' command_ids.
	Count int64
}

// OutcomeTotals are the outcome counters since migration 013 (019 for
// messages): the folded
// totals plus the events not folded yet, read in one snapshot, so that a
// fold running meanwhile neither hides nor doubles any. They only grow.
func (s *Store) OutcomeTotals(ctx context.Context) ([]OutcomeTotal, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT kind, product_id, status, from_status, sum(n)::bigint FROM (
			SELECT kind, product_id, status, from_status, commands AS n FROM outcome_totals
			UNION ALL
			SELECT kind, product_id, status, from_status, cardinality(command_ids) FROM outcome_events
		) t
		GROUP BY kind, product_id, status, from_status
		ORDER BY kind, product_id, status, from_status`)
	if err != nil {
		return nil, interpretError(fmt.Errorf("read outcome totals: %w", err))
	}
	defer rows.Close()
	var out []OutcomeTotal
	for rows.Next() {
		var o OutcomeTotal
		if err := rows.Scan(&o.Kind, &o.ProductID, &o.Status, &o.FromStatus, &o.Count); err != nil {
			return nil, interpretError(fmt.Errorf("read outcome totals: %w", err))
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, interpretError(fmt.Errorf("read outcome totals: %w", err))
	}
	return out, nil
}

// FoldOutcomes moves the outcome events written so far into the totals,
// in one statement: each event is added once, and OutcomeTotals reads the
// same before and after. It returns how many event rows it folded. One
// replica at a time does it (the holder of the metrics lease); two at once
// would still be exact, each deleting what it adds.
func (s *Store) FoldOutcomes(ctx context.Context) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `
		WITH gone AS (
			DELETE FROM outcome_events RETURNING kind, product_id, status, from_status, cardinality(command_ids) AS n
		), added AS (
			INSERT INTO outcome_totals AS t (kind, product_id, status, from_status, commands)
			SELECT kind, product_id, status, from_status, sum(n) FROM gone
			GROUP BY kind, product_id, status, from_status
			ORDER BY kind, product_id, status, from_status
			ON CONFLICT (kind, product_id, status, from_status) DO UPDATE SET commands = t.commands + EXCLUDED.commands
		)
		SELECT count(*) FROM gone`).Scan(&n)
	if err != nil {
		return 0, interpretError(fmt.Errorf("fold outcome events: %w", err))
	}
	return n, nil
}
