package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"slices"
	"time"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/replay"
	"github.com/cmdtrack/cmdtrack/store"
)

// Version is set at build time with -ldflags "-X main.Version=v1.2.3".
var Version = "dev"

// usageError is a mistake in how cmdtrack was invoked or configured: exit
// status 2, which systemd's RestartPreventExitStatus does not retry.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// exitStatus reports err on stderr and returns the process exit status: 0 on
// success (a clean shutdown included), 2 for a usage or configuration error,
// 1 for anything else.
func exitStatus(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "cmdtrack: %v\n", err)
	if errors.As(err, new(usageError)) {
		return 2
	}
	return 1
}

// command is one subcommand: `cmdtrack -h` lists them in this order.
type command struct {
	name string
	// aliases also name it ("--version" for "version").
	aliases []string
	// args and summary are its lines in `cmdtrack -h`.
	args, summary string
	// flags reads its arguments before the configuration (so that -h needs
	// none) and returns what runs it; -h prints its usage on stdout and
	// returns flag.ErrHelp. nil: the command takes no arguments, and main
	// runs it.
	flags func(args []string, stdout, stderr io.Writer) (action, error)
	main  action
	// readOnly commands get a pool whose transactions cannot write,
	// whatever the role may do.
	readOnly bool
	// bare commands need neither the configuration nor the database.
	bare bool
}

// action runs a command; e holds what it needs (nothing but stdout for a
// bare one).
type action func(ctx context.Context, e *env) error

// env is what a command runs with.
type env struct {
	cfg    *Config
	st     *store.Store
	log    *slog.Logger
	stdout io.Writer
}

// commands are cmdtrack's subcommands; the first is the default. A
// function, not a variable, since help prints them.
func commands() []command {
	return []command{
		{name: "run", summary: "consume the AMQP queue(s) until SIGTERM or SIGINT",
			main: func(ctx context.Context, e *env) error { return runWorker(ctx, e.cfg, e.st, e.log) }},
		{name: "migrate", summary: "apply database migrations and exit", main: migrateCmd},
		{name: "replay", summary: "re-decode dead letters; apply and remove those that now succeed", main: replayCmd},
		{name: "upkeep", summary: "once: history partitions, retention and the outcome rollup (what workers do hourly)", main: upkeepCmd},
		{name: "send", args: "-device ID (-paras JSON [-sync] | -message PAYLOAD | -properties JSON) [-service S] [-command NAME] [...]",
			summary: "deliver a command, a device message or a property set through the IoTDA API and record it", flags: parseSendFlags},
		{name: "reconcile", args: "[-threshold 1h | -since TIME [-until TIME]] [-v] [COMMAND_ID ...]",
			summary: "ask the IoTDA API about commands left open and merge its answers", flags: parseReconcileFlags},
		{name: "webhooks", args: "replay [-endpoint NAME] [ID ...] | forget NAME", summary: "send webhook events that failed for good again; stop webhooks to an endpoint", flags: parseWebhooksFlags},
		{name: "console", summary: "serve the read-only web console (CMDTRACK_CONSOLE_ADDR) until SIGTERM or SIGINT", readOnly: true,
			main: func(ctx context.Context, e *env) error { return serveConsole(ctx, e.cfg, e.st, e.log) }},
		{name: "version", aliases: []string{"-version", "--version"}, summary: "print version and build information", bare: true,
			main: func(_ context.Context, e *env) error { _, err := fmt.Fprintln(e.stdout, versionString()); return err }},
		{name: "help", aliases: []string{"-h", "-help", "--help"}, bare: true,
			main: func(_ context.Context, e *env) error { printUsage(e.stdout); return nil }},
	}
}

// lookup finds the command called name.
func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name || slices.Contains(c.aliases, name) {
			return c, true
		}
	}
	return command{}, false
}

// run runs the subcommand named by args[0] (default "run"). ctx ending
// (SIGTERM, SIGINT) starts a clean shutdown.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	name := commands()[0].name
	if len(args) > 0 {
		name, args = args[0], args[1:]
	}
	cmd, ok := lookup(name)
	if !ok {
		return usageError{fmt.Errorf("unknown command %q (see cmdtrack -h)", name)}
	}
	do := cmd.main
	if cmd.flags != nil {
		var err error
		if do, err = cmd.flags(args, stdout, stderr); errors.Is(err, flag.ErrHelp) {
			return nil
		} else if err != nil {
			return err
		}
	} else if len(args) > 0 {
		return usageError{fmt.Errorf("%s takes no arguments (configuration is read from the environment; see cmdtrack -h)", name)}
	}
	if cmd.bare {
		return do(ctx, &env{stdout: stdout})
	}

	cfg, err := loadConfig(cmd.name)
	if err != nil {
		return usageError{fmt.Errorf("configuration: %w", err)}
	}
	log := newLogger(cfg, stderr)
	// The console only reads: its transactions are read-only whatever the
	// role may do.
	st, err := store.Open(ctx, cfg.DatabaseURL, store.Options{MaxConns: cfg.DatabaseMaxConns, ReadOnly: cmd.readOnly})
	if err != nil {
		return usageError{err}
	}
	defer st.Close()
	return do(ctx, &env{cfg: cfg, st: st, log: log, stdout: stdout})
}

// migrateCmd is `cmdtrack migrate`.
func migrateCmd(ctx context.Context, e *env) error {
	if err := e.st.Migrate(ctx); err != nil {
		return err
	}
	e.log.Info("migrations applied")
	// Leave the history's partitions ready for the workers.
	_, err := newUpkeep(e.cfg, e.st, e.log, nil).Partitions(ctx)
	return err
}

// upkeepCmd is `cmdtrack upkeep`: one run of what the workers do on their
// own (CMDTRACK_UPKEEP), for a schema owner's cron job when the workers may
// not create tables.
func upkeepCmd(ctx context.Context, e *env) error {
	return newUpkeep(e.cfg, e.st, e.log, nil).RunOnce(ctx)
}

// replayCmd is `cmdtrack replay`.
func replayCmd(ctx context.Context, e *env) error {
	res, err := replay.Run(ctx, e.st, e.cfg.limits())
	fmt.Fprintf(e.stdout, "replayed dead letters: %d applied, %d skipped (other resources), %d still failing\n",
		res.Applied, res.Skipped, res.StillFailing)
	return err
}

// printUsage lists the commands and every variable with its default, as
// `cmdtrack -h` shows.
func printUsage(w io.Writer) {
	fmt.Fprint(w, "cmdtrack keeps IoTDA device command lifecycles in PostgreSQL.\n\nUsage:\n")
	const col = 21 // where summaries begin
	for i, c := range commands() {
		if c.summary == "" {
			continue
		}
		line := "  cmdtrack " + c.name
		if i == 0 {
			line = "  cmdtrack [" + c.name + "]"
		}
		if c.args != "" {
			line += " " + c.args
		}
		if len(line) < col {
			fmt.Fprintf(w, "%-*s%s\n", col, line, c.summary)
		} else {
			fmt.Fprintf(w, "%s\n%*s%s\n", line, col, "", c.summary)
		}
	}
	printConfigUsage(w)
}

// helpAsked reports whether a subcommand's arguments ask for its usage,
// which needs no configuration.
func helpAsked(args []string) bool {
	return slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "-help" || a == "--help" })
}

// limits are what a message may be or claim, on every channel.
func (c *Config) limits() ingest.Limits {
	return ingest.Limits{MaxBodyBytes: c.MaxBodyBytes, MaxFutureSkew: c.MaxFutureSkew}
}

// migrateWithRetry applies migrations, waiting for the database if it is not
// up yet: a worker started before PostgreSQL should not crash-loop.
func migrateWithRetry(ctx context.Context, st *store.Store, log *slog.Logger) error {
	for attempt := 1; ; attempt++ {
		err := st.Migrate(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !store.Unavailable(err) {
			return err
		}
		if attempt == 1 {
			log.Warn("database not reachable; waiting to apply migrations", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(time.Duration(attempt)*time.Second, 10*time.Second)):
		}
	}
}

func newLogger(cfg *Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel)) // validated in loadConfig
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func versionString() string {
	s := "cmdtrack " + Version
	if bi, ok := debug.ReadBuildInfo(); ok {
		s += " " + bi.GoVersion
		for _, kv := range bi.Settings {
			switch kv.Key {
			case "vcs.revision", "vcs.time", "vcs.modified":
				s += " " + kv.Key + "=" + kv.Value
			}
		}
	}
	return s
}
