package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/go-amqp"

	"github.com/cmdtrack/cmdtrack/consumer"
	"github.com/cmdtrack/cmdtrack/internal/simulate"
)

const defaultAMQPURL = "amqp://guest:guest@127.0.0.1:5672/"

type publishFlags struct {
	url, queue          string
	sim                 simulate.Config
	rate                float64
	messages            int
	expect, sentLog     string
	expectPresence      string
	expectMessages      string
	inflight            int
	timeout             time.Duration
	quiet               bool
	commandsSetExplicit bool
}

func publishCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	p, err := parsePublish(args, stderr)
	if p == nil || err != nil {
		return err
	}

	genStart := time.Now()
	s, msgs := p.stream(genStart)
	if !p.quiet {
		fmt.Fprintf(stderr, "iotda-sim: generated %d messages (%d commands) in %s\n",
			len(msgs), len(s.Commands), time.Since(genStart).Round(time.Millisecond))
	}
	if p.expect != "" {
		if err := writeFileAtomic(p.expect, func(w io.Writer) error { return simulate.WriteExpected(w, s.Commands) }); err != nil {
			return fmt.Errorf("write expected state: %w", err)
		}
	}

	if p.expectPresence != "" {
		if err := writeFileAtomic(p.expectPresence, func(w io.Writer) error { return simulate.WriteExpectedPresence(w, s.Devices) }); err != nil {
			return fmt.Errorf("write expected presence: %w", err)
		}
	}
	if p.expectMessages != "" {
		if err := writeFileAtomic(p.expectMessages, func(w io.Writer) error { return simulate.WriteExpectedMessages(w, s.DeviceMessages) }); err != nil {
			return fmt.Errorf("write expected device messages: %w", err)
		}
	}

	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	sent := make([]int64, len(msgs))
	start := time.Now()
	if err := publish(ctx, p, msgs, sent, stderr); err != nil {
		return err
	}
	elapsed := time.Since(start)

	if p.sentLog != "" {
		if err := writeFileAtomic(p.sentLog, func(w io.Writer) error { return writeSentLog(w, msgs, sent) }); err != nil {
			return fmt.Errorf("write sent log: %w", err)
		}
	}
	notes, poison, foreign, changes, msgNotes := distinct(msgs)
	fmt.Fprintf(stdout, "publish: %d messages (%d commands, %d distinct notifications, %d distinct poison, %d foreign, %d distinct status changes of %d devices, %d distinct device message notifications of %d device messages) to %s in %s: %.0f msg/s\n",
		len(msgs), len(s.Commands), notes, poison, foreign, changes, len(s.Devices), msgNotes, len(s.DeviceMessages), p.queue,
		elapsed.Round(time.Millisecond), float64(len(msgs))/elapsed.Seconds())
	return nil
}

// parsePublish reads publish's flags; nil and no error after -h.
func parsePublish(args []string, stderr io.Writer) (*publishFlags, error) {
	var p publishFlags
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&p.url, "url", envOr(defaultAMQPURL, "CMDTRACK_AMQP_URL"), "AMQP 1.0 broker URL (default $CMDTRACK_AMQP_URL, else "+defaultAMQPURL+")")
	fs.StringVar(&p.queue, "queue", "/queue/cmdtrack", "target address; a bare NAME means /queue/NAME (RabbitMQ declares it, durable)")
	fs.IntVar(&p.sim.Commands, "commands", 1000, "commands in the stream (each makes 2 to 4 notifications); with -message-share, downlinks (commands and device messages)")
	fs.IntVar(&p.sim.Devices, "devices", 0, "devices the commands are spread over (0: commands/4)")
	fs.IntVar(&p.sim.Products, "products", 3, "products the devices belong to")
	fs.Uint64Var(&p.sim.Seed, "seed", 1, "seed: the same flags give the same stream")
	fs.Float64Var(&p.sim.OutOfOrder, "out-of-order", 0, "fraction of messages moved to a later place (1: shuffle everything)")
	fs.Float64Var(&p.sim.Duplicate, "duplicate", 0, "fraction of messages sent twice (the copy comes later, like a redelivery)")
	fs.Float64Var(&p.sim.Poison, "poison", 0, "unusable messages per valid one (truncated JSON, unknown status, ...)")
	fs.Float64Var(&p.sim.Foreign, "foreign", 0, "notifications of other resources (skipped by cmdtrack) per valid one")
	fs.BoolVar(&p.sim.Presence, "presence", false, "also device status changes (device.status), coherent with the commands: a device goes offline while "+
		"a command of its times out or stays stuck; -poison then covers them too")
	fs.Float64Var(&p.sim.MessageShare, "message-share", 0, "share of the downlinks that are device messages (device.message.status: PENDING, DELIVERED, FAILED, TIMEOUT, "+
		"in both body shapes, some ids reused on other devices, some final after final); 1: messages only")
	fs.Func("start", "date the stream from this fixed `time` instead of just before now: RFC 3339 or a day (2006-01-02); "+
		"the tests' and benchmarks' streams start at "+simulate.FixedStart.Format(time.DateOnly)+
		" (default: commands created over the 22 hours up to 5 minutes before now)", func(v string) error {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			t, err = time.Parse(time.DateOnly, v)
		}
		if err != nil {
			return fmt.Errorf("want RFC 3339 (2026-11-01T00:00:00Z) or a day (2026-11-01), got %q", v)
		}
		p.sim.Start = t.UTC()
		return nil
	})
	fs.Float64Var(&p.rate, "rate", 0, "messages per second, evenly paced (0: as fast as possible, pipelined)")
	fs.IntVar(&p.messages, "messages", 0, "publish exactly this many messages: without -commands the stream is sized to it; "+
		"with -commands the stream is cut after it (then -expect is refused)")
	fs.StringVar(&p.expect, "expect", "", "write the expected final state of every command here (JSON lines), before publishing")
	fs.StringVar(&p.expectMessages, "expect-messages", "", "with -message-share: write the expected final state of every device message here (JSON lines), before publishing")
	fs.StringVar(&p.expectPresence, "expect-presence", "", "with -presence: write the expected presence of every device here (JSON lines), before publishing")
	fs.StringVar(&p.sentLog, "sent-log", "", "write `request_id<TAB>unix-nanoseconds` of each notification's send start here, after publishing (for latency)")
	fs.IntVar(&p.inflight, "inflight", 1000, "most messages sent and not yet confirmed by the broker")
	fs.DurationVar(&p.timeout, "timeout", 30*time.Minute, "give up after this long")
	fs.BoolVar(&p.quiet, "quiet", false, "no progress lines on stderr")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: iotda-sim publish [flags]

Publishes N commands over M devices and products, each with a plausible
lifecycle (PENDING -> SENT -> DELIVERED -> SUCCESSFUL | FAILED | TIMEOUT,
some EXPIRED, some still in flight) and consistent timestamps, as durable
messages with one Data section. With -message-share, that share of the
downlinks are device messages instead (PENDING -> DELIVERED | FAILED |
TIMEOUT, some delivered after failing or timing out). Prints a one-line summary on stdout.
The stream is dated just before now, so that a console shows it in its last
24 hours, with commands still in flight stuck; -start dates it at a fixed
time instead, the same every run.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil
		}
		return nil, usageError{err}
	}
	fs.Visit(func(f *flag.Flag) { p.commandsSetExplicit = p.commandsSetExplicit || f.Name == "commands" })
	if err := p.validate(fs); err != nil {
		return nil, usageError{err}
	}
	if !strings.HasPrefix(p.queue, "/") {
		p.queue = "/queue/" + p.queue
	}
	return &p, nil
}

// stream generates the stream to publish, dated just before now unless
// -start fixes its dates, and the messages of it to send.
func (p *publishFlags) stream(now time.Time) (*simulate.Stream, []simulate.Message) {
	cfg := p.sim
	cfg.Now = now
	if p.messages > 0 && !p.commandsSetExplicit {
		s := simulate.GenerateN(cfg, p.messages)
		return s, s.Messages
	}
	s := simulate.Generate(cfg)
	msgs := s.Messages
	if p.messages > 0 && p.messages < len(msgs) {
		msgs = msgs[:p.messages]
	}
	return s, msgs
}

func (p *publishFlags) validate(fs *flag.FlagSet) error {
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	case p.sim.Commands < 1:
		return errors.New("-commands must be at least 1")
	case p.sim.Devices < 0 || p.sim.Products < 0:
		return errors.New("-devices and -products must not be negative")
	case p.sim.OutOfOrder < 0 || p.sim.OutOfOrder > 1 || p.sim.Duplicate < 0 || p.sim.Duplicate > 1:
		return errors.New("-out-of-order and -duplicate must be between 0 and 1")
	case p.sim.Poison < 0 || p.sim.Poison > 10 || p.sim.Foreign < 0 || p.sim.Foreign > 10:
		return errors.New("-poison and -foreign must be between 0 and 10")
	case p.rate < 0:
		return errors.New("-rate must not be negative")
	case p.messages < 0:
		return errors.New("-messages must not be negative")
	case p.expectPresence != "" && !p.sim.Presence:
		return errors.New("-expect-presence needs -presence")
	case p.sim.MessageShare < 0 || p.sim.MessageShare > 1:
		return errors.New("-message-share must be between 0 and 1")
	case p.expectMessages != "" && p.sim.MessageShare == 0:
		return errors.New("-expect-messages needs -message-share")
	case p.messages > 0 && p.commandsSetExplicit && (p.expect != "" || p.expectPresence != "" || p.expectMessages != ""):
		return errors.New("-expect with -messages and -commands: a cut stream has no well-defined final state; drop -commands to size the stream to -messages")
	case p.inflight < 1:
		return errors.New("-inflight must be at least 1")
	case p.queue == "" || p.queue == "/queue/":
		return errors.New("-queue is empty")
	}
	return nil
}

// publish sends msgs in order on one link, with up to p.inflight sends
// awaiting the broker's confirmation at once, paced to p.rate if set.
// sent[i] receives the time message i was handed to the link.
func publish(ctx context.Context, p *publishFlags, msgs []simulate.Message, sent []int64, stderr io.Writer) error {
	conn, err := amqp.Dial(ctx, p.url, &amqp.ConnOptions{Properties: map[string]any{"product": "iotda-sim"}})
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer consumer.CloseConn(conn, 5*time.Second)
	sess, err := conn.NewSession(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin session: %w", err)
	}
	sender, err := sess.NewSender(ctx, p.queue, consumer.SenderOptions(p.queue))
	if err != nil {
		return fmt.Errorf("attach sender to %s: %w", p.queue, err)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	receipts := make(chan amqp.SendReceipt, p.inflight)
	var wg sync.WaitGroup
	var confirmed int64
	wg.Go(func() {
		for r := range receipts {
			state, err := r.Wait(ctx)
			if err == nil {
				if rej, ok := state.(*amqp.StateRejected); ok {
					err = fmt.Errorf("broker rejected a message: %w", rej.Error)
				}
			}
			if err != nil {
				cancel(err)
				for range receipts {
				}
				return
			}
			confirmed++
		}
	})

	start := time.Now()
	lastProgress := start
	var interval time.Duration
	if p.rate > 0 {
		interval = time.Duration(float64(time.Second) / p.rate)
	}
	var sendErr error
	for i := range msgs {
		if interval > 0 {
			if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
				}
			}
		}
		if ctx.Err() != nil {
			break
		}
		m := amqp.NewMessage(msgs[i].Body)
		m.Header = &amqp.MessageHeader{Durable: true}
		sent[i] = time.Now().UnixNano()
		r, err := sender.SendWithReceipt(ctx, m, nil)
		if err != nil {
			sendErr = fmt.Errorf("send message %d: %w", i, err)
			break
		}
		receipts <- r // blocks while p.inflight sends await confirmation
		if !p.quiet && i%1000 == 0 && time.Since(lastProgress) >= 5*time.Second {
			lastProgress = time.Now()
			fmt.Fprintf(stderr, "iotda-sim: %d of %d sent (%.0f msg/s)\n", i, len(msgs), float64(i)/time.Since(start).Seconds())
		}
	}
	close(receipts)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return fmt.Errorf("publish: %w (%d of %d confirmed)", err, confirmed, len(msgs))
	}
	return sendErr
}

// distinct counts the distinct valid, poison, foreign, status change and
// device message bodies among msgs: what a correct worker stores as history
// rows and dead letters.
func distinct(msgs []simulate.Message) (notes, poison, foreign, changes, msgNotes int) {
	seen := make(map[*byte]bool, len(msgs))
	for _, m := range msgs {
		if len(m.Body) == 0 || seen[&m.Body[0]] {
			continue
		}
		seen[&m.Body[0]] = true
		switch m.Kind {
		case simulate.Valid:
			notes++
		case simulate.Poison:
			poison++
		case simulate.Foreign:
			foreign++
		case simulate.PresenceChange:
			changes++
		case simulate.MessageChange:
			msgNotes++
		}
	}
	return notes, poison, foreign, changes, msgNotes
}

var requestIDField = []byte(`"request_id":"`)

// writeSentLog writes request_id and send time of every message that has a
// request id (valid notifications; duplicates repeat it).
func writeSentLog(w io.Writer, msgs []simulate.Message, sent []int64) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	var line []byte
	for i, m := range msgs {
		if sent[i] == 0 {
			continue
		}
		at := bytes.Index(m.Body, requestIDField)
		if at < 0 {
			continue
		}
		id := m.Body[at+len(requestIDField):]
		end := bytes.IndexByte(id, '"')
		if end < 0 {
			continue
		}
		line = append(line[:0], id[:end]...)
		line = append(line, '\t')
		line = strconv.AppendInt(line, sent[i], 10)
		line = append(line, '\n')
		if _, err := bw.Write(line); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// writeFileAtomic writes path through a temporary file and a rename, so a
// reader never sees it half written.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
