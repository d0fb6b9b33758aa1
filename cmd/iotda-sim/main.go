// Command iotda-sim publishes realistic IoTDA device.command.status
// notification streams to an AMQP 1.0 queue and checks a cmdtrack database
// against the final state the stream must produce. See `iotda-sim -h`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `iotda-sim makes IoTDA device.command.status notification streams (the JSON
shape of the platform's push notification), with device.status and
device.message.status among them on request, for demos, tests and benchmarks.

Usage:
  iotda-sim publish [flags]   publish a stream to an AMQP 1.0 queue; optionally
                              write the expected final state of every command
  iotda-sim verify [flags]    check a cmdtrack database against an expected-state file
  iotda-sim help              show this text

Each command has its own flags: iotda-sim publish -h, iotda-sim verify -h.

Example (local RabbitMQ and PostgreSQL, see scripts/testenv.sh):
  iotda-sim publish -queue /queue/demo -commands 10000 -out-of-order 0.2 \
      -duplicate 0.05 -poison 0.001 -expect /tmp/demo.jsonl
  CMDTRACK_AMQP_QUEUE=/queue/demo cmdtrack     # until the queue is drained
  iotda-sim verify -expect /tmp/demo.jsonl

Exit status: 0 on success, 1 on failure or verify mismatches, 2 on usage errors.
`

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "publish":
		err = publishCmd(ctx, args[1:], stdout, stderr)
	case "verify":
		err = verifyCmd(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "iotda-sim: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "iotda-sim %s: %v\n", args[0], err)
		return 2
	case errors.As(err, new(silentError)):
		return 1
	default:
		fmt.Fprintf(stderr, "iotda-sim %s: %v\n", args[0], err)
		return 1
	}
}

// usageError is a mistake in how iotda-sim was invoked.
type usageError struct{ error }

// silentError fails the command after it already said why.
type silentError struct{ error }

func envOr(def string, names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return def
}
