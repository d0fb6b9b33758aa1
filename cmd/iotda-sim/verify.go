package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/store"
)

const maxMismatchLines = 50

func verifyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dbURL := fs.String("database-url", os.Getenv("CMDTRACK_DATABASE_URL"),
		"PostgreSQL URL of the cmdtrack database; add &search_path=SCHEMA for a schema (default $CMDTRACK_DATABASE_URL)")
	expect := fs.String("expect", "", "expected final state, JSON lines as written by `iotda-sim publish -expect` (required)")
	expectPresence := fs.String("expect-presence", "", "also the expected presence of devices, as written by `iotda-sim publish -expect-presence`")
	expectMessages := fs.String("expect-messages", "", "also the expected final state of device messages, as written by `iotda-sim publish -expect-messages`")
	exact := fs.Bool("exact", false, "also require device_commands (and with -expect-messages device_messages) to hold no row missing from the expect file")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: iotda-sim verify -expect FILE [flags]

Compares every command's row (status, result, header fields, lifecycle times,
last event time) and its number of history rows with the expected final
state, with -expect-presence every device's presence row, and with
-expect-messages every device message's row (status, error, name, topic,
header fields, the time of each status, last event time) and its number of
history rows. Prints each mismatch (at most 50 lines) and a one-line
summary; exits 1 if anything differs.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	if *expect == "" {
		return usageError{errors.New("-expect is required")}
	}
	if *dbURL == "" {
		return usageError{errors.New("-database-url is required (or set CMDTRACK_DATABASE_URL)")}
	}
	f, err := os.Open(*expect)
	if err != nil {
		return err
	}
	cmds, err := simulate.ReadExpected(f)
	_ = f.Close()
	if err != nil {
		return fmt.Errorf("read %s: %w", *expect, err)
	}

	var devices []simulate.Device
	if *expectPresence != "" {
		f, err := os.Open(*expectPresence)
		if err != nil {
			return err
		}
		devices, err = simulate.ReadExpectedPresence(f)
		_ = f.Close()
		if err != nil {
			return fmt.Errorf("read %s: %w", *expectPresence, err)
		}
	}

	var msgs []simulate.DeviceMessage
	if *expectMessages != "" {
		f, err := os.Open(*expectMessages)
		if err != nil {
			return err
		}
		msgs, err = simulate.ReadExpectedMessages(f)
		_ = f.Close()
		if err != nil {
			return fmt.Errorf("read %s: %w", *expectMessages, err)
		}
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	st, err := store.Open(ctx, *dbURL, store.Options{MaxConns: 2})
	if err != nil {
		return err
	}
	defer st.Close()
	bad, err := simulate.Verify(ctx, st.Pool(), cmds)
	if err != nil {
		return err
	}
	if len(devices) > 0 {
		badDevices, err := simulate.VerifyPresence(ctx, st.Pool(), devices)
		if err != nil {
			return err
		}
		bad = append(bad, badDevices...)
	}
	if *expectMessages != "" {
		badMessages, err := simulate.VerifyMessages(ctx, st.Pool(), msgs)
		if err != nil {
			return err
		}
		bad = append(bad, badMessages...)
	}
	if *exact {
		var rows int
		if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM device_commands`).Scan(&rows); err != nil {
			return fmt.Errorf("count commands: %w", err)
		}
		if rows > len(cmds) {
			// Every expected command has its row unless reported above, so
			// the surplus are commands the stream never had.
			bad = append(bad, fmt.Sprintf("device_commands holds %d rows, the stream has %d commands", rows, len(cmds)))
		}
		if *expectMessages != "" {
			if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM device_messages`).Scan(&rows); err != nil {
				return fmt.Errorf("count device messages: %w", err)
			}
			if rows > len(msgs) {
				bad = append(bad, fmt.Sprintf("device_messages holds %d rows, the stream has %d device messages", rows, len(msgs)))
			}
		}
	}
	for i, line := range bad {
		if i == maxMismatchLines {
			fmt.Fprintf(stdout, "... and %d more\n", len(bad)-i)
			break
		}
		fmt.Fprintln(stdout, line)
	}
	summary := fmt.Sprintf("verify: %d commands", len(cmds))
	if len(devices) > 0 {
		summary += fmt.Sprintf(", %d devices", len(devices))
	}
	if *expectMessages != "" {
		summary += fmt.Sprintf(", %d device messages", len(msgs))
	}
	fmt.Fprintf(stdout, "%s, %d mismatches\n", summary, len(bad))
	if len(bad) > 0 {
		return silentError{fmt.Errorf("%d mismatches", len(bad))}
	}
	return nil
}
