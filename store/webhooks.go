package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// The webhooks' outbox (issue 29; README "Webhooks"). The merge writes
// outcome_events in the same statement as the row change that causes them
// (migration 013); the fold (FoldOutcomes) moves each event into the
// totals and, in the same statement, into one webhook delivery per
// endpoint whose route takes it. So there is never an event without its
// change, nor a change without its event, and each is dispatched once
// across replicas and redeliveries, as it is counted once.

// WebhookRoute is what the fold needs to know of one endpoint: its name,
// and which events it takes.
type WebhookRoute struct {
	// Endpoint names the endpoint; unique, at most 64 bytes.
	Endpoint string
	// Types are the event types it takes (KindFinished, ...); empty: all.
	Types []string
	// Products are the product ids it takes; empty: all.
	Products []string
}

// WebhookEvent is one event to deliver to one endpoint: a row of
// webhook_deliveries.
type WebhookEvent struct {
	// ID is the delivery's row id, for Delivered, Retry and Fail.
	ID int64
	// WebhookID is the event's stable id, the same for every endpoint and
	// every attempt: the webhook-id header receivers deduplicate on.
	WebhookID string
	Endpoint  string
	// Type is the outcome_events kind: command.finished, ...
	Type string
	// Subject names the row: a command id, 'device_id/message_id' for a
	// device message, a call id.
	Subject    string
	ProductID  string
	Status     string
	FromStatus string
	// OccurredAt is when the merge wrote the event.
	OccurredAt time.Time
	// Since is when its retry window began: OccurredAt, or its last
	// replay (ReplayWebhooks) if later. A replayed event gets the whole
	// window again, not one try.
	Since time.Time
	// Attempts counts the claims so far, this one included: the claim's
	// token, which its settles give back (WebhookSettle, RetryWebhook,
	// FailWebhook), so that a settle that comes after the lease ran out
	// and another claim took the event changes nothing.
	Attempts int
	// LeaseEnd is when the claim's lease ends, by the database's clock
	// (ClaimWebhooks; zero elsewhere): past it another claim may take the
	// event.
	LeaseEnd time.Time
}

// WebhookSettle names a claimed event to settle: its row and the claim's
// token (WebhookEvent.Attempts).
type WebhookSettle struct {
	ID       int64
	Attempts int
}

// WebhookBacklogCap is how many events a backlog count reads at most
// (WebhookBacklogs): a count at the cap means at least that many.
const WebhookBacklogCap = 100000

// WebhookBacklog is one endpoint's outbox: what is waiting, how old the
// oldest is, and what failed for good.
type WebhookBacklog struct {
	Endpoint string
	Pending  int64
	// OldestPending is the OccurredAt of the oldest pending event; zero
	// when none is.
	OldestPending time.Time
	Failed        int64
	// From webhook_endpoints, as the settling calls keep it: delivered and
	// failed for good since the endpoint was first settled, the last
	// success, the last failed attempt (retried or not) and its error.
	Delivered, FailedTotal       int64
	LastSuccessAt, LastFailureAt time.Time
	LastError                    string
}

// FailedWebhook is an event that failed for good: kept, shown and
// replayable (ReplayWebhooks).
type FailedWebhook struct {
	WebhookEvent
	LastError string
	FailedAt  time.Time
}

const webhookColumns = `id, webhook_id, endpoint, type, subject, product_id, status, from_status, occurred_at,
	greatest(occurred_at, replayed_at), attempts`

func scanWebhook(row pgx.Row, e *WebhookEvent, more ...any) error {
	return row.Scan(append([]any{&e.ID, &e.WebhookID, &e.Endpoint, &e.Type, &e.Subject, &e.ProductID, &e.Status, &e.FromStatus,
		&e.OccurredAt, &e.Since, &e.Attempts}, more...)...)
}

const claimWebhooks = `
		WITH c AS (
			SELECT d.id FROM webhook_deliveries d
			WHERE d.endpoint = $1 AND d.state = 'pending' AND d.next_attempt_at <= now() - $4 * interval '1 microsecond'
				-- The first pending event of its subject: a scalar subquery,
				-- one probe of the subject index per candidate, which the
				-- planner cannot turn into an anti-join over the whole
				-- backlog (as it turned NOT EXISTS: 15.8 ms a claim in make
				-- bench with one endpoint). A subject's events are looked
				-- for as state <> 'failed' (pending, by the CHECK) in every
				-- statement: no partial index's predicate follows from it,
				-- so the subject index (migration 025) is the only one that
				-- answers, whatever the statistics say; with 'pending' the
				-- planner priced the partial indexes at a row or two while
				-- the table was never analyzed and read the endpoint's
				-- backlog per candidate (9.7 ms a claim).
				AND d.id = (SELECT e.id FROM webhook_deliveries e
					WHERE e.endpoint = d.endpoint AND e.subject = d.subject AND e.state <> 'failed'
					ORDER BY e.endpoint, e.subject, e.id LIMIT 1)
			ORDER BY d.next_attempt_at, d.id
			LIMIT $2
			FOR UPDATE SKIP LOCKED
		)
		UPDATE webhook_deliveries d SET attempts = d.attempts + 1, next_attempt_at = now() + $3 * interval '1 microsecond'
		FROM c WHERE d.id = c.id
		RETURNING d.id, d.webhook_id, d.endpoint, d.type, d.subject, d.product_id, d.status, d.from_status, d.occurred_at,
			greatest(d.occurred_at, d.replayed_at), d.attempts, d.next_attempt_at`

// ClaimWebhooks takes up to n events of endpoint that are due, for lease:
// until then no other claim takes them, and after it, if they were not
// settled (the worker died), the next claim does, counting one attempt
// more. One statement, FOR UPDATE SKIP LOCKED, so that the replicas'
// workers share the outbox and no transaction stays open while they
// deliver. An event is due when its next attempt's time has come and no
// earlier event of its endpoint and subject is pending (leased, in backoff
// or waiting): in order per command, and so the events of one claim have
// distinct subjects. Oldest due first; returned by ID. The events held
// back behind an earlier one wait out of the due range (next_attempt_at
// infinity: see FoldOutcomes), so that a claim does not walk them; the NOT
// EXISTS keeps the order whatever puts a row in the range. With dueFor
// above 0, only the events due for at least that long are taken (the
// deliverer's lag while the data path drains a backlog).
func (s *Store) ClaimWebhooks(ctx context.Context, endpoint string, n int, lease, dueFor time.Duration) ([]WebhookEvent, error) {
	rows, err := s.pool.Query(ctx, claimWebhooks,
		endpoint, n, lease.Microseconds(), dueFor.Microseconds())
	if err != nil {
		return nil, interpretError(fmt.Errorf("claim webhooks of endpoint %s: %w", endpoint, err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (WebhookEvent, error) {
		var e WebhookEvent
		return e, scanWebhook(r, &e, &e.LeaseEnd)
	})
	if err != nil {
		return nil, interpretError(fmt.Errorf("claim webhooks of endpoint %s: %w", endpoint, err))
	}
	slices.SortFunc(out, func(a, b WebhookEvent) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// settleDelivered is WebhookDelivered's statement: it deletes the events
// whose tokens are given, but with $4 false only those that hold nothing
// behind them, and gives back the ids and subjects it deleted.
const settleDelivered = `
			WITH found AS MATERIALIZED (
				-- By the primary key alone, and the endpoint checked on what
				-- it found: as a condition on the table the endpoint took the
				-- planner to the subject index (every event of the endpoint,
				-- ANDed with the keys' bitmap: 380 buffers a settle in make
				-- bench), and state = 'pending' to a partial index read whole
				-- (see claimWebhooks).
				SELECT d.id, d.endpoint FROM webhook_deliveries d
				WHERE d.id = ANY ($2::bigint[]) AND d.state <> 'failed'
			), gone AS (
				DELETE FROM webhook_deliveries d USING found f, unnest($2::bigint[], $3::int[]) AS s(id, attempts)
				WHERE d.id = f.id AND f.endpoint = $1 AND d.id = s.id AND d.attempts = s.attempts
					AND d.state <> 'failed'
					-- Checked again on the row as it is once a fold that went
					-- behind it (and marked it) commits: that row is left to
					-- the settle that makes its subject's next event due.
					AND ($4 OR NOT d.holds)
				RETURNING d.id, d.subject
			), counted AS (
				INSERT INTO webhook_endpoints AS w (endpoint, delivered, last_success_at)
				SELECT $1, count(*), now() FROM gone
				HAVING count(*) > 0 -- only stale tokens: nothing delivered
				ON CONFLICT (endpoint) DO UPDATE SET delivered = w.delivered + EXCLUDED.delivered, last_success_at = EXCLUDED.last_success_at
			)
			SELECT coalesce(array_agg(id), '{}'), coalesce(array_agg(subject), '{}') FROM gone`

// WebhookDelivered settles events of endpoint as delivered: deletes them
// and counts them in webhook_endpoints, and makes their subjects' next
// events due. An event whose claim's token is not the one given (its lease
// ran out and another claim took it, or it was settled already) is left
// alone, and not counted.
//
// Most events hold nothing behind them (holds, migration 028): one
// statement settles those. The others, each with the next event of its
// subject made due, take a transaction of two statements, the second
// seeing what a fold that went behind them committed meanwhile.
func (s *Store) WebhookDelivered(ctx context.Context, endpoint string, evs []WebhookSettle) error {
	if len(evs) == 0 {
		return nil
	}
	// In id order, as the fold locks the rows it goes behind.
	evs = slices.SortedFunc(slices.Values(evs), func(a, b WebhookSettle) int { return cmp.Compare(a.ID, b.ID) })
	ids, attempts := make([]int64, len(evs)), make([]int32, len(evs))
	for i, e := range evs {
		ids[i], attempts[i] = e.ID, int32(e.Attempts)
	}
	var gone []int64
	var subjects []string
	if err := s.pool.QueryRow(ctx, settleDelivered, endpoint, ids, attempts, false).Scan(&gone, &subjects); err != nil {
		return interpretError(wrapf(err, "settle delivered webhooks of endpoint %s", endpoint))
	}
	if len(gone) == len(ids) {
		return nil
	}
	slices.Sort(gone)
	n := 0
	for i, id := range ids {
		if _, found := slices.BinarySearch(gone, id); !found {
			ids[n], attempts[n] = id, attempts[i]
			n++
		}
	}
	ids, attempts = ids[:n], attempts[:n]
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, settleDelivered, endpoint, ids, attempts, true).Scan(&gone, &subjects)
		if err != nil {
			return err
		}
		return settleSubjects(ctx, tx, endpoint, subjects)
	})
	return interpretError(wrapf(err, "settle delivered webhooks of endpoint %s", endpoint))
}

// settleSubjectsSQL is settleSubjects' statement.
const settleSubjectsSQL = `
		UPDATE webhook_deliveries d SET next_attempt_at = now()
		FROM (
			SELECT (SELECT h.id FROM webhook_deliveries h
				WHERE h.endpoint = $1 AND h.subject = s.subject AND h.state <> 'failed'
				ORDER BY h.endpoint, h.subject, h.id LIMIT 1) AS id -- the subject index's probe (see claimWebhooks)
			FROM (SELECT DISTINCT unnest($2::text[]) AS subject) s
		) n
		WHERE d.id = n.id AND d.next_attempt_at = 'infinity'`

// settleSubjects makes the next pending event of each of subjects (of
// endpoint) due, if it was held back: the one before it has been delivered
// or failed. A statement of its own, after the one that settled, in the
// same transaction: it sees a row a fold added behind the settled one while
// the settle waited for it (FoldOutcomes).
func settleSubjects(ctx context.Context, tx pgx.Tx, endpoint string, subjects []string) error {
	if len(subjects) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, settleSubjectsSQL, endpoint, subjects)
	return err
}

// wakeHeldWebhooks is WakeHeldWebhooks' statement.
const wakeHeldWebhooks = `
		UPDATE webhook_deliveries d SET next_attempt_at = now()
		WHERE d.id = ANY (ARRAY(
				-- The held rows: a range of the claim index, in its order (as
				-- a condition on the table, the planner read the endpoint's
				-- whole backlog through the pending index while the table
				-- was never analyzed).
				SELECT h.id FROM webhook_deliveries h
				WHERE h.endpoint = $1 AND h.state = 'pending' AND h.next_attempt_at = 'infinity'
				ORDER BY h.endpoint, h.next_attempt_at, h.id))
			AND d.state = 'pending' AND d.next_attempt_at = 'infinity'
			-- The first of its subject: the subject index's probe (see claimWebhooks).
			AND d.id = (SELECT e.id FROM webhook_deliveries e
				WHERE e.endpoint = d.endpoint AND e.subject = d.subject AND e.state <> 'failed'
				ORDER BY e.endpoint, e.subject, e.id LIMIT 1)`

// WakeHeldWebhooks makes due every event of endpoint held back
// (next_attempt_at infinity) with no earlier pending event of its subject
// left to wait for, and returns how many. The settles wake the next event
// when they remove one, but not in every case: a fold by a replica from
// before migration 028 does not mark the row it goes behind (holds), so
// that a newer replica's settle of it wakes nothing; and a replay, or a
// retry, that reads a subject's first event while its settle commits may
// put an event behind one that is gone. Such an event would wait for ever;
// the deliverer runs this now and then (webhook.WakeInterval), so that it
// waits minutes at most. The claim still takes a subject's events in order
// (its first-of-subject test), so waking one too early is harmless.
func (s *Store) WakeHeldWebhooks(ctx context.Context, endpoint string) (int64, error) {
	tag, err := s.pool.Exec(ctx, wakeHeldWebhooks, endpoint)
	if err != nil {
		return 0, interpretError(fmt.Errorf("wake held webhooks of endpoint %s: %w", endpoint, err))
	}
	return tag.RowsAffected(), nil
}

// retryWebhook is RetryWebhook's statement.
const retryWebhook = `
		WITH r AS (
			UPDATE webhook_deliveries d SET last_error = $4,
				-- Its subject's first pending event, probed as the claim does.
				next_attempt_at = CASE WHEN (SELECT e.id FROM webhook_deliveries e
					WHERE e.endpoint = d.endpoint AND e.subject = d.subject AND e.state <> 'failed'
					ORDER BY e.endpoint, e.subject, e.id LIMIT 1) < d.id
					THEN 'infinity' ELSE $3::timestamptz END
			WHERE d.id = $1 AND d.attempts = $2 AND d.state <> 'failed' RETURNING d.endpoint
		)
		INSERT INTO webhook_endpoints AS w (endpoint, last_failure_at, last_error)
		SELECT endpoint, now(), $4 FROM r
		ON CONFLICT (endpoint) DO UPDATE SET last_failure_at = EXCLUDED.last_failure_at, last_error = EXCLUDED.last_error`

// RetryWebhook puts a pending event back, to be claimed again at next,
// with the reason its attempt failed (on the event and its endpoint's
// record), if attempts is its claim's token. An event settled meanwhile, or
// claimed again, is left alone. Behind an earlier pending event of its
// subject (a replay put one back meanwhile), it waits for it instead.
func (s *Store) RetryWebhook(ctx context.Context, id int64, attempts int, next time.Time, reason string) error {
	_, err := s.pool.Exec(ctx, retryWebhook,
		id, attempts, next, reason)
	return interpretError(wrapf(err, "settle webhook %d for a retry", id))
}

// FailWebhook marks a pending event failed for good, with the reason, if
// attempts is its claim's token: it is kept (FailedWebhooks) until
// replayed, and its subject's next event is made due. An event settled
// meanwhile, or claimed again, is left alone.
func (s *Store) FailWebhook(ctx context.Context, id int64, attempts int, reason string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var endpoint, subject string
		err := tx.QueryRow(ctx, `
			WITH f AS (
				UPDATE webhook_deliveries SET state = 'failed', failed_at = now(), last_error = $3
				WHERE id = $1 AND attempts = $2 AND state <> 'failed' RETURNING endpoint, subject
			), counted AS (
				INSERT INTO webhook_endpoints AS w (endpoint, failed, last_failure_at, last_error)
				SELECT endpoint, 1, now(), $3 FROM f
				ON CONFLICT (endpoint) DO UPDATE SET failed = w.failed + 1, last_failure_at = EXCLUDED.last_failure_at,
					last_error = EXCLUDED.last_error
			)
			SELECT endpoint, subject FROM f`, id, attempts, reason).Scan(&endpoint, &subject)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		return settleSubjects(ctx, tx, endpoint, []string{subject})
	})
	return interpretError(wrapf(err, "settle webhook %d as failed", id))
}

// webhookEndpoints are the endpoints the outbox knows: routed, with a
// record (webhook_endpoints), or with an event pending or failed. Those of
// the events are read a probe per endpoint (a skip scan of the backlog's
// and the failed rows' indexes), never the whole outbox.
const webhookEndpoints = `
	WITH RECURSIVE p AS (
		SELECT min(endpoint) AS endpoint FROM webhook_deliveries WHERE state = 'pending'
		UNION ALL
		SELECT (SELECT min(endpoint) FROM webhook_deliveries WHERE state = 'pending' AND endpoint > p.endpoint)
		FROM p WHERE p.endpoint IS NOT NULL
	), f AS (
		SELECT min(endpoint) AS endpoint FROM webhook_deliveries WHERE state = 'failed'
		UNION ALL
		SELECT (SELECT min(endpoint) FROM webhook_deliveries WHERE state = 'failed' AND endpoint > f.endpoint)
		FROM f WHERE f.endpoint IS NOT NULL
	), known AS (
		SELECT endpoint FROM p WHERE endpoint IS NOT NULL
		UNION SELECT endpoint FROM f WHERE endpoint IS NOT NULL
		UNION SELECT endpoint FROM webhook_routes
		UNION SELECT endpoint FROM webhook_endpoints
	)`

// WebhookBacklogs are the endpoints' outboxes, by endpoint: every endpoint
// routed, with a record in webhook_endpoints or with an event in the
// outbox. Each is read through its indexes: the counts stop at
// WebhookBacklogCap (a count at the cap means at least that many), so that
// reading it costs the same however far an endpoint that is slow or down
// has fallen behind.
func (s *Store) WebhookBacklogs(ctx context.Context) ([]WebhookBacklog, error) {
	var out []WebhookBacklog
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The planner prices each capped count at the cap, and JIT-compiles
		// the statement for 0.3 s (measured at 1 M events) to run it in 10 ms.
		if _, err := tx.Exec(ctx, `SET LOCAL jit = off`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, webhookEndpoints+`
			SELECT k.endpoint,
				(SELECT count(*) FROM (SELECT FROM webhook_deliveries d
					WHERE d.endpoint = k.endpoint AND d.state = 'pending' LIMIT $1) x),
				(SELECT min(d.occurred_at) FROM webhook_deliveries d WHERE d.endpoint = k.endpoint AND d.state = 'pending'),
				(SELECT count(*) FROM (SELECT FROM webhook_deliveries d
					WHERE d.endpoint = k.endpoint AND d.state = 'failed' LIMIT $1) x),
				coalesce(w.delivered, 0), coalesce(w.failed, 0), w.last_success_at, w.last_failure_at, coalesce(w.last_error, '')
			FROM known k LEFT JOIN webhook_endpoints w ON w.endpoint = k.endpoint
			ORDER BY 1`, WebhookBacklogCap)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (WebhookBacklog, error) {
			var b WebhookBacklog
			var oldest, success, failure pgtype.Timestamptz
			err := r.Scan(&b.Endpoint, &b.Pending, &oldest, &b.Failed, &b.Delivered, &b.FailedTotal, &success, &failure, &b.LastError)
			b.OldestPending, b.LastSuccessAt, b.LastFailureAt = oldest.Time, success.Time, failure.Time
			return b, err
		})
		return err
	})
	if err != nil {
		return nil, interpretError(fmt.Errorf("read the webhooks' outbox: %w", err))
	}
	return out, nil
}

// ReplayWebhooks puts events that failed for good back in the outbox, due
// now, their attempts counted from zero and their retry window from now
// (replayed_at: Since): those of endpoint ("" for every endpoint), of ids
// (nil for all of them). It returns how many. Each goes back in its
// subject's order: the first pending event of a subject is due, those
// after it wait behind it (out of the claim's due range), a later one
// leased meanwhile included.
func (s *Store) ReplayWebhooks(ctx context.Context, endpoint string, ids []int64) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var endpoints, subjects []string
		err := tx.QueryRow(ctx, `
			WITH r AS (
				UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at = now(), failed_at = NULL,
					replayed_at = now()
				WHERE state = 'failed' AND ($1 = '' OR endpoint = $1) AND ($2::bigint[] IS NULL OR id = ANY ($2))
				RETURNING endpoint, subject
			), s AS (SELECT DISTINCT endpoint, subject FROM r)
			SELECT (SELECT count(*) FROM r), coalesce(array_agg(endpoint), '{}'), coalesce(array_agg(subject), '{}') FROM s`,
			endpoint, ids).Scan(&n, &endpoints, &subjects)
		if err != nil || n == 0 {
			return err
		}
		_, err = tx.Exec(ctx, `
			UPDATE webhook_deliveries d SET next_attempt_at = CASE
				WHEN d.id <> h.head THEN 'infinity'
				WHEN d.next_attempt_at = 'infinity' THEN now()
				ELSE d.next_attempt_at END,
				holds = true -- each may have one behind it now (migration 028)
			FROM (
				SELECT s.endpoint, s.subject, (SELECT e.id FROM webhook_deliveries e
					WHERE e.endpoint = s.endpoint AND e.subject = s.subject AND e.state <> 'failed'
					ORDER BY e.endpoint, e.subject, e.id LIMIT 1) AS head -- the subject index's probe (see claimWebhooks)
				FROM unnest($1::text[], $2::text[]) AS s(endpoint, subject)
			) h
			WHERE d.endpoint = h.endpoint AND d.subject = h.subject AND d.state <> 'failed'`, endpoints, subjects)
		return err
	})
	if err != nil {
		return 0, interpretError(fmt.Errorf("replay failed webhooks: %w", err))
	}
	return n, nil
}

// SetWebhookRoutes makes routes the routes the fold dispatches with (a
// worker with webhook settings, at start: the newest settings win). Every
// other endpoint's route is deleted and its pending events fail, with
// reason: kept, shown and replayable, counted in its record. It returns
// the endpoints dropped and how many events failed.
func (s *Store) SetWebhookRoutes(ctx context.Context, routes []WebhookRoute, reason string) (dropped []string, failed int64, err error) {
	names := make([]string, len(routes))
	for i, r := range routes {
		names[i] = r.Endpoint
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, r := range routes {
			if _, err := tx.Exec(ctx, `
				INSERT INTO webhook_routes (endpoint, types, products) VALUES ($1, $2, $3)
				ON CONFLICT (endpoint) DO UPDATE SET types = EXCLUDED.types, products = EXCLUDED.products, updated_at = now()`,
				r.Endpoint, append([]string{}, r.Types...), append([]string{}, r.Products...)); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM webhook_routes WHERE endpoint <> ALL ($1)`, names); err != nil {
			return err
		}
		var err error
		dropped, failed, err = failEndpoints(ctx, tx, webhookEndpoints+` SELECT endpoint FROM known WHERE endpoint <> ALL ($1)`, names, reason)
		return err
	})
	if err != nil {
		return nil, 0, interpretError(fmt.Errorf("write the webhook routes: %w", err))
	}
	return dropped, failed, nil
}

// ForgetWebhookEndpoint stops webhooks to endpoint (cmdtrack webhooks
// forget): its route is deleted, so that the fold dispatches nothing more
// to it, and its pending events fail with reason. It returns how many
// failed, and whether the outbox knew the endpoint at all.
func (s *Store) ForgetWebhookEndpoint(ctx context.Context, endpoint, reason string) (failed int64, known bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM webhook_routes WHERE endpoint = $1`, endpoint)
		if err != nil {
			return err
		}
		known = tag.RowsAffected() > 0
		if !known {
			if err := tx.QueryRow(ctx, webhookEndpoints+` SELECT EXISTS (SELECT FROM known WHERE endpoint = $1)`,
				endpoint).Scan(&known); err != nil {
				return err
			}
		}
		_, failed, err = failEndpoints(ctx, tx, `SELECT $1::text`, endpoint, reason)
		return err
	})
	if err != nil {
		return 0, false, interpretError(fmt.Errorf("forget webhook endpoint %s: %w", endpoint, err))
	}
	return failed, known, nil
}

// failEndpoints fails every pending event of the endpoints query gives
// (with arg as $1), with reason, counting them in their records.
func failEndpoints(ctx context.Context, tx pgx.Tx, query string, arg any, reason string) (endpoints []string, n int64, err error) {
	rows, err := tx.Query(ctx, query, arg)
	if err != nil {
		return nil, 0, err
	}
	endpoints, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(endpoints) == 0 {
		return endpoints, 0, err
	}
	err = tx.QueryRow(ctx, `
		WITH f AS (
			UPDATE webhook_deliveries SET state = 'failed', failed_at = now(), last_error = $2
			WHERE endpoint = ANY ($1) AND state = 'pending' RETURNING endpoint
		), counted AS (
			INSERT INTO webhook_endpoints AS w (endpoint, failed, last_failure_at, last_error)
			SELECT endpoint, count(*), now(), $2 FROM f GROUP BY endpoint
			ON CONFLICT (endpoint) DO UPDATE SET failed = w.failed + EXCLUDED.failed, last_failure_at = EXCLUDED.last_failure_at,
				last_error = EXCLUDED.last_error
		)
		SELECT count(*) FROM f`, endpoints, reason).Scan(&n)
	return endpoints, n, err
}

// FailedWebhooks are up to limit events that failed for good, of endpoint
// ("" for every endpoint), newest first, with IDs below before (0: from
// the newest): the next page starts before the last ID of this one.
func (s *Store) FailedWebhooks(ctx context.Context, endpoint string, limit int, before int64) ([]FailedWebhook, error) {
	if before <= 0 {
		before = math.MaxInt64
	}
	rows, err := s.pool.Query(ctx, `SELECT `+webhookColumns+`, coalesce(last_error, ''), failed_at
		FROM webhook_deliveries WHERE state = 'failed' AND id < $3 AND ($1 = '' OR endpoint = $1)
		ORDER BY id DESC LIMIT $2`, endpoint, limit, before)
	if err != nil {
		return nil, interpretError(fmt.Errorf("read failed webhooks: %w", err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (FailedWebhook, error) {
		var f FailedWebhook
		return f, scanWebhook(r, &f.WebhookEvent, &f.LastError, &f.FailedAt)
	})
	if err != nil {
		return nil, interpretError(fmt.Errorf("read failed webhooks: %w", err))
	}
	return out, nil
}

// wrapf is err in what it was doing; nil stays nil.
func wrapf(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}
