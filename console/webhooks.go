package console

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// WebhookEndpoint is one endpoint's outbox and record (migration 021): as
// store.WebhookBacklogs reads them, with the oldest pending event's age.
type WebhookEndpoint struct {
	Endpoint string `json:"endpoint"`
	// Pending events wait for a claim, a lease or a backoff; Failed ones
	// failed for good and wait for a replay.
	Pending int64 `json:"pending"`
	Failed  int64 `json:"failed"`
	// OldestPending is the outcome time of the oldest pending event; null
	// when none is.
	OldestPending     *time.Time `json:"oldest_pending"`
	OldestPendingAgeS *float64   `json:"oldest_pending_age_s"`
	// Delivered and FailedTotal count since the endpoint was first settled
	// (webhook_endpoints): a replayed event that failed again counts twice.
	Delivered     int64      `json:"delivered"`
	FailedTotal   int64      `json:"failed_total"`
	LastSuccessAt *time.Time `json:"last_success_at"`
	// LastFailureAt is the last failed attempt, retried or not, and
	// LastError why it failed.
	LastFailureAt *time.Time `json:"last_failure_at"`
	LastError     string     `json:"last_error"`
}

// FailedWebhook is an event that failed for good: a row of
// webhook_deliveries in state 'failed'.
type FailedWebhook struct {
	// ID is the row's id, what `cmdtrack webhooks replay ID` takes.
	ID         int64      `json:"id"`
	WebhookID  string     `json:"webhook_id"`
	Endpoint   string     `json:"endpoint"`
	Type       string     `json:"type"`
	Subject    string     `json:"subject"`
	ProductID  string     `json:"product_id"`
	Status     string     `json:"status"`
	FromStatus string     `json:"from_status,omitempty"`
	OccurredAt time.Time  `json:"occurred_at"`
	Attempts   int        `json:"attempts"`
	FailedAt   *time.Time `json:"failed_at"`
	// ReplayedAt is its last replay: it failed again since.
	ReplayedAt *time.Time `json:"replayed_at"`
	LastError  string     `json:"last_error"`
	// URL is the page of the row the event is about; empty for a type the
	// console does not know.
	URL string `json:"url"`
}

// WebhooksPage is /webhooks.
type WebhooksPage struct {
	Endpoints []WebhookEndpoint `json:"endpoints"`
	// Endpoint filters the failed events; empty: every endpoint's.
	Endpoint string          `json:"endpoint,omitempty"`
	Failed   []FailedWebhook `json:"failed"`
	// Next is the query string of the next page of failed events; empty
	// on the last.
	Next string `json:"next"`
	// Replay is the command that sends the listed failed events again:
	// the console only reads.
	Replay string `json:"replay"`
}

// subjectURL is the page of the row an outcome event of type typ names
// (as OutcomeData reads it): /commands/{id}, /messages/{device}/{id}, or
// /calls/{id}; "" for a type the console does not know.
func subjectURL(typ, subject string) string {
	switch kind, _, _ := strings.Cut(typ, "."); kind {
	case "command":
		return "/commands/" + url.PathEscape(subject)
	case "message":
		if device, id, ok := strings.Cut(subject, "/"); ok {
			return messagePath(device, id)
		}
	case "call":
		return "/calls/" + url.PathEscape(subject)
	}
	return ""
}

// webhookEndpoints reads every endpoint's outbox beside its record, as
// store.WebhookBacklogs does. The whole outbox is read: small but for an
// endpoint that is down, and then the page says so.
func webhookEndpoints(ctx context.Context, db *pgxpool.Pool, now time.Time) ([]WebhookEndpoint, error) {
	rows, err := db.Query(ctx, `
		SELECT coalesce(d.endpoint, w.endpoint), coalesce(d.pending, 0), d.oldest, coalesce(d.failed, 0),
			coalesce(w.delivered, 0), coalesce(w.failed, 0), w.last_success_at, w.last_failure_at, coalesce(w.last_error, '')
		FROM (
			SELECT endpoint, count(*) FILTER (WHERE state = 'pending') AS pending,
				min(occurred_at) FILTER (WHERE state = 'pending') AS oldest, count(*) FILTER (WHERE state = 'failed') AS failed
			FROM webhook_deliveries GROUP BY endpoint
		) d FULL JOIN webhook_endpoints w ON w.endpoint = d.endpoint
		ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("read the webhooks' outbox: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (WebhookEndpoint, error) {
		var e WebhookEndpoint
		err := r.Scan(&e.Endpoint, &e.Pending, &e.OldestPending, &e.Failed, &e.Delivered, &e.FailedTotal,
			&e.LastSuccessAt, &e.LastFailureAt, &e.LastError)
		if e.OldestPending != nil {
			age := math.Max(0, now.Sub(*e.OldestPending).Seconds())
			e.OldestPendingAgeS = &age
		}
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("read the webhooks' outbox: %w", err)
	}
	if out == nil {
		out = []WebhookEndpoint{}
	}
	return out, nil
}

// failedWebhooks reads a page of the events failed for good, of endpoint
// ("" for all), newest first, with ids below before (0: from the newest):
// keyset, through webhook_deliveries_failed (migration 021).
func failedWebhooks(ctx context.Context, db *pgxpool.Pool, endpoint string, before int64) ([]FailedWebhook, error) {
	if before <= 0 {
		before = math.MaxInt64
	}
	rows, err := db.Query(ctx, `SELECT id, webhook_id, endpoint, type, subject, product_id, status, from_status, occurred_at,
			attempts, failed_at, replayed_at, coalesce(last_error, '')
		FROM webhook_deliveries WHERE state = 'failed' AND id < $2 AND ($1 = '' OR endpoint = $1)
		ORDER BY id DESC LIMIT `+strconv.Itoa(pageSize+1), endpoint, before)
	if err != nil {
		return nil, fmt.Errorf("read failed webhooks: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (FailedWebhook, error) {
		var f FailedWebhook
		err := r.Scan(&f.ID, &f.WebhookID, &f.Endpoint, &f.Type, &f.Subject, &f.ProductID, &f.Status, &f.FromStatus,
			&f.OccurredAt, &f.Attempts, &f.FailedAt, &f.ReplayedAt, &f.LastError)
		f.URL = subjectURL(f.Type, f.Subject)
		return f, err
	})
	if err != nil {
		return nil, fmt.Errorf("read failed webhooks: %w", err)
	}
	if out == nil {
		out = []FailedWebhook{}
	}
	return out, nil
}

// shellWord is s as one word of a shell command: as it is when it is a
// valid endpoint name (letters, digits, '.', '_', '-'), else single-quoted.
// The filter comes from the URL: a link someone sends must not make the
// command the page shows, copied, run anything else.
func shellWord(s string) string {
	plain := func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
	}
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool { return !plain(r) }) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// webhooksQuery is /webhooks' query string.
func webhooksQuery(endpoint string, beforeID int64) string {
	v := url.Values{}
	if endpoint != "" {
		v.Set("endpoint", endpoint)
	}
	if beforeID > 0 {
		v.Set("before_id", strconv.FormatInt(beforeID, 10))
	}
	return v.Encode()
}

var webhooksPage = endpoint[*WebhooksPage]{template: "webhooks", title: "Webhooks", nav: "webhooks",
	load: func(ctx context.Context, db *pgxpool.Pool, r *http.Request, now time.Time) (*WebhooksPage, error) {
		q := r.URL.Query()
		var before int64
		if s := q.Get("before_id"); s != "" {
			var err error
			if before, err = strconv.ParseInt(s, 10, 64); err != nil || before <= 0 {
				return nil, badRequest("before_id is the cursor of the next page: follow the Older link")
			}
		}
		p := &WebhooksPage{Endpoint: strings.TrimSpace(q.Get("endpoint")), Replay: "cmdtrack webhooks replay"}
		if p.Endpoint != "" {
			p.Replay += " -endpoint " + shellWord(p.Endpoint)
		}
		var err error
		if p.Endpoints, err = webhookEndpoints(ctx, db, now); err != nil {
			return nil, err
		}
		if p.Failed, err = failedWebhooks(ctx, db, p.Endpoint, before); err != nil {
			return nil, err
		}
		var last *FailedWebhook
		if p.Failed, last = cutPage(p.Failed, pageSize); last != nil {
			p.Next = webhooksQuery(p.Endpoint, last.ID)
		}
		return p, nil
	}}
