package console

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// What more than one page reads. Every query of the console's pages (one
// file a page) reads through an index bounded by the page's own limits
// (a page of rows, a command's own times, the rollup's days), so that no
// page costs more with 10 million commands than with a thousand:
// `make bench/scale` times each page and shows its plans.

// statuses are the lifecycle's statuses, in order.
var statuses = []string{"PENDING", "SENT", "DELIVERED", "SUCCESSFUL", "FAILED", "TIMEOUT", "EXPIRED", "CANCELED"}

// errNotFound is an unknown command, device or dead letter: a 404 page.
var errNotFound = errors.New("not found")

func msBetween(a, b *time.Time) *int64 {
	if a == nil || b == nil {
		return nil
	}
	ms := b.Sub(*a).Milliseconds()
	return &ms
}

// StatusCount is a number of commands in one status.
type StatusCount struct {
	Status   string `json:"status"`
	Commands int64  `json:"commands"`
}

// Rates are a set of commands' outcome counts and rates (0 to 1, of all the
// commands counted, final or not).
type Rates struct {
	Commands    int64   `json:"commands"`
	Successful  int64   `json:"successful"`
	Failed      int64   `json:"failed"`
	TimedOut    int64   `json:"timed_out"`
	SuccessRate float64 `json:"success_rate"`
	FailureRate float64 `json:"failure_rate"`
	TimeoutRate float64 `json:"timeout_rate"`
}

func (r *Rates) add(status string, n int64) {
	r.Commands += n
	switch status {
	case "SUCCESSFUL":
		r.Successful += n
	case "FAILED":
		r.Failed += n
	case "TIMEOUT":
		r.TimedOut += n
	}
	r.SuccessRate, r.FailureRate, r.TimeoutRate = ratio(r.Successful, r.Commands), ratio(r.Failed, r.Commands), ratio(r.TimedOut, r.Commands)
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Presence is a device's last known status, from device.status
// notifications (README "Device presence").
type Presence struct {
	Status          string     `json:"status"`
	StatusSince     time.Time  `json:"status_since"`
	LastOnlineTime  *time.Time `json:"last_online_time"`
	LastOfflineTime *time.Time `json:"last_offline_time"`
}

// loadPresence reads a device's presence: nil, without an error, when none
// is stored (or the command names no device).
func loadPresence(ctx context.Context, db *pgxpool.Pool, deviceID string) (*Presence, error) {
	if deviceID == "" {
		return nil, nil
	}
	var p Presence
	err := db.QueryRow(ctx, `SELECT status, status_since, last_online_time, last_offline_time
		FROM device_presence WHERE device_id = $1`, deviceID).Scan(&p.Status, &p.StatusSince, &p.LastOnlineTime, &p.LastOfflineTime)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read device presence: %w", err)
	}
	return &p, nil
}
