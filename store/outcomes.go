package store

import (
	"context"
	"encoding/json"
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
// same before and after. In the same statement it dispatches them to the
// webhooks (migration 021): one webhook_deliveries row per event, id in
// its command_ids and route whose Types and Products take it, so that each
// is dispatched exactly once, as it is counted once. It returns how many
// event rows it folded. One replica at a time does it (the holder of the
// metrics lease); two at once would still be exact, each deleting what it
// adds and dispatches.
func (s *Store) FoldOutcomes(ctx context.Context, routes []WebhookRoute) (int64, error) {
	// As JSON, so that each route's lists go as one value; the keys are
	// the fields' names.
	arg, err := json.Marshal(append([]WebhookRoute{}, routes...)) // [], not null
	if err != nil {
		return 0, interpretError(fmt.Errorf("fold outcome events: %w", err))
	}
	var n int64
	err = s.pool.QueryRow(ctx, `
		WITH gone AS (
			DELETE FROM outcome_events RETURNING id, at, kind, product_id, status, from_status, command_ids
		), added AS (
			INSERT INTO outcome_totals AS t (kind, product_id, status, from_status, commands)
			SELECT kind, product_id, status, from_status, sum(cardinality(command_ids)) FROM gone
			GROUP BY kind, product_id, status, from_status
			ORDER BY kind, product_id, status, from_status
			ON CONFLICT (kind, product_id, status, from_status) DO UPDATE SET commands = t.commands + EXCLUDED.commands
		), routes AS (
			SELECT "Endpoint" AS endpoint, coalesce("Types", '{}') AS types, coalesce("Products", '{}') AS products
			FROM jsonb_to_recordset($1::jsonb) AS r("Endpoint" text, "Types" text[], "Products" text[])
		), dispatched AS (
			-- In the events' order, so that a subject's later event gets the
			-- later id (the claim's order per subject).
			INSERT INTO webhook_deliveries (endpoint, webhook_id, type, subject, product_id, status, from_status, occurred_at)
			SELECT r.endpoint, 'evt_' || g.id || '_' || s.n, g.kind, s.subject, g.product_id, g.status, g.from_status, g.at
			FROM gone g
			CROSS JOIN LATERAL unnest(g.command_ids) WITH ORDINALITY AS s(subject, n)
			JOIN routes r ON (cardinality(r.types) = 0 OR g.kind = ANY (r.types))
				AND (cardinality(r.products) = 0 OR g.product_id = ANY (r.products))
			ORDER BY g.id, s.n, r.endpoint
		)
		SELECT count(*) FROM gone`, arg).Scan(&n)
	if err != nil {
		return 0, interpretError(fmt.Errorf("fold outcome events: %w", err))
	}
	return n, nil
}
