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
// same before and after. In the same statement it dispatches them to the
// webhooks (migration 021): one webhook_deliveries row per event, id in
// its command_ids and route of webhook_routes whose types and products
// take it, so that each is dispatched exactly once, as it is counted once,
// and with the same routes whichever replica folds. It returns how many
// event rows it folded. One replica at a time does it (the holder of the
// metrics lease); two at once would still be exact, each deleting what it
// adds and dispatches.
//
// A row whose subject already has a pending row of its endpoint, or an
// earlier one in this fold, waits out of the claim's due range
// (next_attempt_at infinity) until the one before it is settled
// (settleSubjects), and every row it waits behind says so (holds), so
// that only their settles look for a next one. The pending rows it goes
// behind are locked (FOR NO KEY UPDATE, in id order, as the settles lock
// theirs: not FOR SHARE, which two folds at once would both hold and then
// both want to upgrade to mark the row, a deadlock)
// so that a settle deleting or failing one at once either comes first, and
// is not gone behind, or waits for this fold and then sees the row marked
// and the new row to make due.
func (s *Store) FoldOutcomes(ctx context.Context) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, foldOutcomes).Scan(&n)
	if err != nil {
		return 0, interpretError(fmt.Errorf("fold outcome events: %w", err))
	}
	return n, nil
}

// foldOutcomes is FoldOutcomes' statement.
const foldOutcomes = `
		WITH gone AS (
			DELETE FROM outcome_events RETURNING id, at, kind, product_id, status, from_status, command_ids
		), added AS (
			INSERT INTO outcome_totals AS t (kind, product_id, status, from_status, commands)
			SELECT kind, product_id, status, from_status, sum(cardinality(command_ids)) FROM gone
			GROUP BY kind, product_id, status, from_status
			ORDER BY kind, product_id, status, from_status
			ON CONFLICT (kind, product_id, status, from_status) DO UPDATE SET commands = t.commands + EXCLUDED.commands
		), ev AS MATERIALIZED (
			SELECT r.endpoint, g.id, s.n, g.kind, s.subject, g.product_id, g.status, g.from_status, g.at
			FROM gone g
			CROSS JOIN LATERAL unnest(g.command_ids) WITH ORDINALITY AS s(subject, n)
			JOIN webhook_routes r ON (cardinality(r.types) = 0 OR g.kind = ANY (r.types))
				AND (cardinality(r.products) = 0 OR g.product_id = ANY (r.products))
		), behind AS MATERIALIZED (
			-- Probed subject by subject through the subject index, whatever
			-- the statistics say: a join the planner is free to choose read
			-- the endpoint's whole backlog on every fold while the table's
			-- statistics were those of a smaller table. (OFFSET 0 keeps the
			-- planner from flattening the probe back into such a join; and
			-- state <> 'failed', not 'pending', leaves the subject index
			-- the only one that answers: see store.claimWebhooks.)
			SELECT p.id FROM (SELECT DISTINCT endpoint, subject FROM ev) e
			CROSS JOIN LATERAL (
				SELECT d.id FROM webhook_deliveries d
				WHERE d.endpoint = e.endpoint AND d.subject = e.subject AND d.state <> 'failed'
				ORDER BY d.endpoint, d.subject, d.id -- the subject index's order: its probe, not the pending index's
				OFFSET 0
			) p
		), ahead AS MATERIALIZED (
			SELECT d.id, d.endpoint, d.subject, d.holds FROM webhook_deliveries d
			-- <> 'failed': the primary key's probes (with 'pending' the
			-- planner read the partial subject index whole: 195 ms).
			WHERE d.id = ANY (ARRAY(SELECT id FROM behind)) AND d.state <> 'failed'
			ORDER BY d.id
			FOR NO KEY UPDATE OF d
		), marked AS (
			-- The rows it goes behind say so, so that their settle makes
			-- the next one due (migration 028).
			UPDATE webhook_deliveries d SET holds = true
			WHERE d.id = ANY (ARRAY(SELECT id FROM ahead WHERE NOT holds))
		), dispatched AS (
			-- In the events' order, so that a subject's later event gets the
			-- later id (the claim's order per subject).
			INSERT INTO webhook_deliveries (endpoint, webhook_id, type, subject, product_id, status, from_status, occurred_at,
				next_attempt_at, holds)
			SELECT e.endpoint, 'evt_' || i.installation_id || '_' || e.id || '_' || e.n, e.kind, e.subject, e.product_id,
				e.status, e.from_status, e.at,
				CASE WHEN row_number() OVER w > 1
					OR EXISTS (SELECT FROM ahead a WHERE a.endpoint = e.endpoint AND a.subject = e.subject)
				THEN 'infinity'::timestamptz ELSE now() END,
				row_number() OVER w < count(*) OVER (PARTITION BY e.endpoint, e.subject) -- a later one of this fold waits behind it
			FROM ev e, cmdtrack_settings i
			WINDOW w AS (PARTITION BY e.endpoint, e.subject ORDER BY e.id, e.n)
			ORDER BY e.id, e.n, e.endpoint
		)
		SELECT count(*) FROM gone`
