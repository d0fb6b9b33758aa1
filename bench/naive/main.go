// Command naive is the benchmark's naive peer: what a user following the
// platform's demo client would write. For each message it receives, it
// decodes the JSON, runs one INSERT ... ON CONFLICT DO UPDATE (autocommit)
// and accepts the message. No batching, no pipelining. It keeps its own
// table, naive_commands, in the schema given by -schema, and exits once it
// has handled -n messages.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/Azure/go-amqp"
	"github.com/jackc/pgx/v5"

	"github.com/cmdtrack/cmdtrack/bench/internal/amqpq"
	"github.com/cmdtrack/cmdtrack/consumer"
)

const schemaSQL = `
CREATE TABLE IF NOT EXISTS naive_commands (
    command_id      text PRIMARY KEY,
    device_id       text,
    product_id      text,
    app_id          text,
    status          text NOT NULL,
    status_rank     smallint NOT NULL,
    created_time    text,
    sent_time       text,
    delivered_time  text,
    response_time   text,
    result          jsonb,
    last_event_time text NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
)`

// The status only moves forward; among equal ranks the later event wins.
const upsertSQL = `
INSERT INTO naive_commands AS c (command_id, device_id, product_id, app_id, status, status_rank,
    created_time, sent_time, delivered_time, response_time, result, last_event_time)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (command_id) DO UPDATE SET
    status = EXCLUDED.status, status_rank = EXCLUDED.status_rank,
    sent_time = coalesce(c.sent_time, EXCLUDED.sent_time),
    delivered_time = coalesce(c.delivered_time, EXCLUDED.delivered_time),
    response_time = coalesce(c.response_time, EXCLUDED.response_time),
    result = coalesce(EXCLUDED.result, c.result),
    last_event_time = EXCLUDED.last_event_time, updated_at = now()
WHERE (EXCLUDED.status_rank, EXCLUDED.last_event_time) > (c.status_rank, c.last_event_time)`

var ranks = map[string]int16{"PENDING": 0, "SENT": 1, "DELIVERED": 2, "SUCCESSFUL": 3, "FAILED": 3, "TIMEOUT": 3, "EXPIRED": 3}

type notification struct {
	Resource    string `json:"resource"`
	Event       string `json:"event"`
	EventTimeMS string `json:"event_time_ms"`
	EventTime   string `json:"event_time"`
	NotifyData  struct {
		Header struct {
			AppID     string `json:"app_id"`
			DeviceID  string `json:"device_id"`
			ProductID string `json:"product_id"`
		} `json:"header"`
		Body struct {
			CommandID     string          `json:"command_id"`
			Status        string          `json:"status"`
			CreatedTime   string          `json:"created_time"`
			SentTime      string          `json:"sent_time"`
			DeliveredTime string          `json:"delivered_time"`
			ResponseTime  string          `json:"response_time"`
			Result        json.RawMessage `json:"result"`
		} `json:"body"`
	} `json:"notify_data"`
}

func main() {
	url := flag.String("url", envOr("CMDTRACK_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"), "AMQP 1.0 broker URL")
	queue := flag.String("queue", "", "queue address, e.g. /queue/bench-x (required)")
	dbURL := flag.String("database-url", os.Getenv("CMDTRACK_DATABASE_URL"), "PostgreSQL URL")
	schema := flag.String("schema", "", "schema for naive_commands (created if missing; required)")
	n := flag.Int("n", 0, "exit after handling this many messages (required)")
	window := flag.Int("window", 128, "credit issued at a time")
	timeout := flag.Duration("timeout", 15*time.Minute, "give up after this long")
	flag.Parse()
	if *queue == "" || *n < 1 || *dbURL == "" || *schema == "" {
		fmt.Fprintln(os.Stderr, "naive: -queue, -n, -database-url and -schema are required")
		flag.Usage()
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	err := run(ctx, *url, *queue, *dbURL, *schema, *n, *window)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "naive:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, url, queue, dbURL, schema string, n, window int) error {
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return err
	}
	cfg.RuntimeParams["search_path"] = pgx.Identifier{schema}.Sanitize()
	db, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close(context.WithoutCancel(ctx))
	if _, err := db.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return err
	}
	if _, err := db.Exec(ctx, schemaSQL); err != nil {
		return err
	}
	r, err := amqpq.Open(ctx, url, queue, window)
	if err != nil {
		return err
	}
	defer r.Close(5 * time.Second)

	var first time.Time
	stored, skipped := 0, 0
	for i := range n {
		m, err := r.Receive(ctx)
		if err != nil {
			return fmt.Errorf("after %d messages: %w", i, err)
		}
		if i == 0 {
			first = time.Now()
		}
		var note notification
		var rank int16
		var known bool
		b := &note.NotifyData.Body
		if err := json.Unmarshal(body(m), &note); err != nil || note.Resource == "" || b.CommandID == "" {
			skipped++ // a demo would log and drop it
		} else if rank, known = ranks[b.Status]; !known {
			skipped++
		} else {
			h := &note.NotifyData.Header
			evt := note.EventTimeMS
			if evt == "" {
				evt = note.EventTime
			}
			var result any
			if len(b.Result) > 0 && string(b.Result) != "null" {
				result = string(b.Result)
			}
			if _, err := db.Exec(ctx, upsertSQL, b.CommandID, h.DeviceID, h.ProductID, h.AppID, b.Status, rank,
				b.CreatedTime, b.SentTime, b.DeliveredTime, b.ResponseTime, result, evt); err != nil {
				skipped++ // e.g. a value PostgreSQL refuses: a demo would log and drop it
			} else {
				stored++
			}
		}
		if err := r.Link.AcceptMessage(ctx, m); err != nil {
			return fmt.Errorf("accept: %w", err)
		}
	}
	el := time.Since(first)
	fmt.Printf("naive: %d messages (%d upserts, %d dropped) in %s (first to last): %.0f msg/s\n",
		n, stored, skipped, el.Round(time.Millisecond), float64(n)/el.Seconds())
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// body is the message's payload, as the worker reads it.
func body(m *amqp.Message) []byte {
	b, _ := consumer.MessageBody(m)
	return b
}
