// Command drain is the benchmark's drain limit: a bare AMQP 1.0 consumer
// that receives and accepts every message and stores nothing, so that its
// rate is what the broker can deliver to one receiver link. It exits once
// it has accepted -n messages.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/cmdtrack/cmdtrack/bench/internal/amqpq"
)

func main() {
	url := flag.String("url", envOr("CMDTRACK_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"), "AMQP 1.0 broker URL")
	queue := flag.String("queue", "", "queue address, e.g. /queue/bench-x (required)")
	n := flag.Int("n", 0, "exit after accepting this many messages (required)")
	window := flag.Int("window", 128, "credit issued at a time (cmdtrack's default credit of 256 issues windows of 128)")
	timeout := flag.Duration("timeout", 15*time.Minute, "give up after this long")
	flag.Parse()
	if *queue == "" || *n < 1 {
		fmt.Fprintln(os.Stderr, "drain: -queue and -n are required")
		flag.Usage()
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	err := drain(ctx, *url, *queue, *window, *n)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "drain:", err)
		os.Exit(1)
	}
}

// drain accepts n messages of queue, and prints the rate.
func drain(ctx context.Context, url, queue string, window, n int) error {
	r, err := amqpq.Open(ctx, url, queue, window)
	if err != nil {
		return err
	}
	defer r.Close(5 * time.Second)
	var first time.Time
	for i := range n {
		m, err := r.Receive(ctx)
		if err != nil {
			return fmt.Errorf("after %d messages: %w", i, err)
		}
		if i == 0 {
			first = time.Now()
		}
		if err := r.Link.AcceptMessage(ctx, m); err != nil {
			return fmt.Errorf("accept: %w", err)
		}
	}
	el := time.Since(first)
	fmt.Printf("drain: %d messages in %s (first to last): %.0f msg/s\n", n, el.Round(time.Millisecond), float64(n)/el.Seconds())
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
