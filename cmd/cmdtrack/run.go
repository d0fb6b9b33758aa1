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

// run runs the subcommand named by args[0] (default "run"). ctx ending
// (SIGTERM, SIGINT) starts a clean shutdown.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "run"
	if len(args) > 0 {
		cmd = args[0]
		args = args[1:]
	}
	if len(args) > 0 && cmd != "send" && cmd != "reconcile" {
		return usageError{fmt.Errorf("%s takes no arguments (configuration is read from the environment; see cmdtrack -h)", cmd)}
	}
	switch cmd {
	case "-h", "-help", "--help", "help":
		printUsage(stdout)
		return nil
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, versionString())
		return nil
	case "run", "migrate", "replay", "send", "reconcile", "upkeep", "console":
	default:
		return usageError{fmt.Errorf("unknown command %q (see cmdtrack -h)", cmd)}
	}
	var sf *sendFlags
	if cmd == "send" {
		var err error
		if sf, err = parseSendFlags(args, stdout, stderr); errors.Is(err, flag.ErrHelp) {
			return nil
		} else if err != nil {
			return err
		}
	}
	var rf *reconcileFlags
	if cmd == "reconcile" {
		var err error
		if rf, err = parseReconcileFlags(args, stdout, stderr); errors.Is(err, flag.ErrHelp) {
			return nil
		} else if err != nil {
			return err
		}
	}

	cfg, err := loadConfig(cmd)
	if err != nil {
		return usageError{fmt.Errorf("configuration: %w", err)}
	}
	log := newLogger(cfg, stderr)
	// The console only reads: its transactions are read-only whatever the
	// role may do.
	st, err := store.Open(ctx, cfg.DatabaseURL, store.Options{MaxConns: cfg.DatabaseMaxConns, ReadOnly: cmd == "console"})
	if err != nil {
		return usageError{err}
	}
	defer st.Close()

	switch cmd {
	case "migrate":
		if err := st.Migrate(ctx); err != nil {
			return err
		}
		log.Info("migrations applied")
		// Leave the history's partitions ready for the workers.
		_, err := newUpkeep(cfg, st, log, nil).Partitions(ctx)
		return err
	case "upkeep":
		// One run of what the workers do on their own (CMDTRACK_UPKEEP), for
		// a schema owner's cron job when the workers may not create tables.
		return newUpkeep(cfg, st, log, nil).RunOnce(ctx)
	case "replay":
		res, err := replay.Run(ctx, st, cfg.limits())
		fmt.Fprintf(stdout, "replayed dead letters: %d applied, %d skipped (other resources), %d still failing\n",
			res.Applied, res.Skipped, res.StillFailing)
		return err
	case "send":
		return send(ctx, cfg, st, sf, stdout)
	case "reconcile":
		return reconcileCmd(ctx, cfg, st, rf, stdout, log)
	case "console":
		return serveConsole(ctx, cfg, st, log)
	}
	return runWorker(ctx, cfg, st, log)
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
