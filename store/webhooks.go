package store

import (
	"cmp"
	"context"
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
	// Attempts counts the claims so far, this one included.
	Attempts int
}

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

// ClaimWebhooks takes up to n events of endpoint that are due, for lease:
// until then no other claim takes them, and after it, if they were not
// settled (the worker died), the next claim does, counting one attempt
// more. One statement, FOR UPDATE SKIP LOCKED, so that the replicas'
// workers share the outbox and no transaction stays open while they
// deliver. An event is due when its next attempt's time has come and no
// earlier event of its endpoint and subject is pending (leased, in backoff
// or waiting): in order per command, and so the events of one claim have
// distinct subjects. Oldest due first; returned by ID.
func (s *Store) ClaimWebhooks(ctx context.Context, endpoint string, n int, lease time.Duration) ([]WebhookEvent, error) {
	rows, err := s.pool.Query(ctx, `
		WITH c AS (
			SELECT d.id FROM webhook_deliveries d
			WHERE d.endpoint = $1 AND d.state = 'pending' AND d.next_attempt_at <= now()
				AND NOT EXISTS (SELECT FROM webhook_deliveries e
					WHERE e.subject = d.subject AND e.id < d.id AND e.state = 'pending' AND e.endpoint = d.endpoint)
			ORDER BY d.next_attempt_at, d.id
			LIMIT $2
			FOR UPDATE SKIP LOCKED
		)
		UPDATE webhook_deliveries d SET attempts = d.attempts + 1, next_attempt_at = now() + $3 * interval '1 microsecond'
		FROM c WHERE d.id = c.id
		RETURNING d.id, d.webhook_id, d.endpoint, d.type, d.subject, d.product_id, d.status, d.from_status, d.occurred_at,
			greatest(d.occurred_at, d.replayed_at), d.attempts`,
		endpoint, n, lease.Microseconds())
	if err != nil {
		return nil, interpretError(fmt.Errorf("claim webhooks of endpoint %s: %w", endpoint, err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (WebhookEvent, error) {
		var e WebhookEvent
		return e, scanWebhook(r, &e)
	})
	if err != nil {
		return nil, interpretError(fmt.Errorf("claim webhooks of endpoint %s: %w", endpoint, err))
	}
	slices.SortFunc(out, func(a, b WebhookEvent) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// WebhookDelivered settles events of endpoint as delivered: deletes them
// and counts them in webhook_endpoints, in one statement. An event settled
// already (delivered twice, its lease having run out) is counted once.
func (s *Store) WebhookDelivered(ctx context.Context, endpoint string, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.pool.Exec(ctx, `
		WITH gone AS (
			DELETE FROM webhook_deliveries WHERE endpoint = $1 AND id = ANY ($2) RETURNING id
		)
		INSERT INTO webhook_endpoints AS w (endpoint, delivered, last_success_at)
		SELECT $1, count(*), now() FROM gone
		ON CONFLICT (endpoint) DO UPDATE SET delivered = w.delivered + EXCLUDED.delivered, last_success_at = EXCLUDED.last_success_at`,
		endpoint, ids)
	return interpretError(wrapf(err, "settle delivered webhooks of endpoint %s", endpoint))
}

// RetryWebhook puts a pending event back, to be claimed again at next,
// with the reason its attempt failed (on the event and its endpoint's
// record). An event settled meanwhile is left alone.
func (s *Store) RetryWebhook(ctx context.Context, id int64, next time.Time, reason string) error {
	_, err := s.pool.Exec(ctx, `
		WITH r AS (
			UPDATE webhook_deliveries SET next_attempt_at = $2, last_error = $3
			WHERE id = $1 AND state = 'pending' RETURNING endpoint
		)
		INSERT INTO webhook_endpoints AS w (endpoint, last_failure_at, last_error)
		SELECT endpoint, now(), $3 FROM r
		ON CONFLICT (endpoint) DO UPDATE SET last_failure_at = EXCLUDED.last_failure_at, last_error = EXCLUDED.last_error`,
		id, next, reason)
	return interpretError(wrapf(err, "settle webhook %d for a retry", id))
}

// FailWebhook marks a pending event failed for good, with the reason: it
// is kept (FailedWebhooks) until replayed, and no longer holds its
// subject's later events back. An event settled meanwhile is left alone.
func (s *Store) FailWebhook(ctx context.Context, id int64, reason string) error {
	_, err := s.pool.Exec(ctx, `
		WITH f AS (
			UPDATE webhook_deliveries SET state = 'failed', failed_at = now(), last_error = $2
			WHERE id = $1 AND state = 'pending' RETURNING endpoint
		)
		INSERT INTO webhook_endpoints AS w (endpoint, failed, last_failure_at, last_error)
		SELECT endpoint, 1, now(), $2 FROM f
		ON CONFLICT (endpoint) DO UPDATE SET failed = w.failed + 1, last_failure_at = EXCLUDED.last_failure_at,
			last_error = EXCLUDED.last_error`,
		id, reason)
	return interpretError(wrapf(err, "settle webhook %d as failed", id))
}

// WebhookBacklogs are the endpoints' outboxes, by endpoint: every endpoint
// with an event in the outbox or a record in webhook_endpoints. It reads
// the whole outbox, which is small but for an endpoint that is slow or
// down: then it grows by the events that endpoint missed.
func (s *Store) WebhookBacklogs(ctx context.Context) ([]WebhookBacklog, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT coalesce(d.endpoint, w.endpoint), coalesce(d.pending, 0), d.oldest, coalesce(d.failed, 0),
			coalesce(w.delivered, 0), coalesce(w.failed, 0), w.last_success_at, w.last_failure_at, coalesce(w.last_error, '')
		FROM (
			SELECT endpoint, count(*) FILTER (WHERE state = 'pending') AS pending,
				min(occurred_at) FILTER (WHERE state = 'pending') AS oldest, count(*) FILTER (WHERE state = 'failed') AS failed
			FROM webhook_deliveries GROUP BY endpoint
		) d FULL JOIN webhook_endpoints w ON w.endpoint = d.endpoint
		ORDER BY 1`)
	if err != nil {
		return nil, interpretError(fmt.Errorf("read the webhooks' outbox: %w", err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (WebhookBacklog, error) {
		var b WebhookBacklog
		var oldest, success, failure pgtype.Timestamptz
		err := r.Scan(&b.Endpoint, &b.Pending, &oldest, &b.Failed, &b.Delivered, &b.FailedTotal, &success, &failure, &b.LastError)
		b.OldestPending, b.LastSuccessAt, b.LastFailureAt = oldest.Time, success.Time, failure.Time
		return b, err
	})
	if err != nil {
		return nil, interpretError(fmt.Errorf("read the webhooks' outbox: %w", err))
	}
	return out, nil
}

// ReplayWebhooks puts events that failed for good back in the outbox, due
// now, their attempts counted from zero and their retry window from now
// (replayed_at: Since): those of endpoint ("" for every endpoint), of ids
// (nil for all of them). It returns how many.
func (s *Store) ReplayWebhooks(ctx context.Context, endpoint string, ids []int64) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
		UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at = now(), failed_at = NULL,
			replayed_at = now()
		WHERE state = 'failed' AND ($1 = '' OR endpoint = $1) AND ($2::bigint[] IS NULL OR id = ANY ($2))`,
		endpoint, ids)
	if err != nil {
		return 0, interpretError(fmt.Errorf("replay failed webhooks: %w", err))
	}
	return tag.RowsAffected(), nil
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
