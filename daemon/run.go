// Package daemon is the cmdtrack command: it reads the configuration, wires
// the store, the consumer and the ops server, and runs the subcommands.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/cmdtrack/cmdtrack/consumer"
	"github.com/cmdtrack/cmdtrack/httppush"
	"github.com/cmdtrack/cmdtrack/ops"
	"github.com/cmdtrack/cmdtrack/store"
)

// Version is set at build time with -ldflags "-X .../daemon.Version=v1.2.3".
var Version = "dev"

// usageError is a mistake in how cmdtrack was invoked or configured.
type usageError struct{ error }

// Main runs cmdtrack with args (without the program name) and returns the
// process exit status. ctx ending (SIGTERM, SIGINT) starts a clean shutdown.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := Run(ctx, args, stdout, stderr)
	var uerr usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &uerr):
		fmt.Fprintf(stderr, "cmdtrack: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "cmdtrack: %v\n", err)
		return 1
	}
}

// Run is Main returning an error.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "run"
	if len(args) > 0 {
		cmd = args[0]
		args = args[1:]
	}
	if len(args) > 0 && cmd != "send" {
		return usageError{fmt.Errorf("%s takes no arguments (configuration is read from the environment; see cmdtrack -h)", cmd)}
	}
	switch cmd {
	case "-h", "-help", "--help", "help":
		printUsage(stdout)
		return nil
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, versionString())
		return nil
	case "run", "migrate", "replay", "send":
	default:
		return usageError{fmt.Errorf("unknown command %q (see cmdtrack -h)", cmd)}
	}

	cfg, err := loadConfig(cmd)
	if err != nil {
		return usageError{fmt.Errorf("configuration: %w", err)}
	}
	log := newLogger(cfg, stderr)
	st, err := store.Open(ctx, cfg.DatabaseURL, store.Options{MaxConns: cfg.DatabaseMaxConns})
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
		return nil
	case "replay":
		res, err := st.Replay(ctx, func(body []byte, source string, receivedAt time.Time) store.Item {
			return consumer.DecodeItemAt(body, source, cfg.MaxBodyBytes, receivedAt)
		})
		fmt.Fprintf(stdout, "replayed dead letters: %d applied, %d skipped (other resources), %d still failing\n",
			res.Applied, res.Skipped, res.StillFailing)
		return err
	case "send":
		return send(ctx, cfg, st, args, stdout, stderr)
	}
	return runWorker(ctx, cfg, st, log)
}

func runWorker(ctx context.Context, cfg *Config, st *store.Store, log *slog.Logger) error {
	// The live heap is a few MiB (bounded by credit and batch size) and
	// garbage is per-message, so collecting less often is cheap CPU back;
	// the soft memory limit keeps the peak where it was. GOGC and GOMEMLIMIT
	// still override both.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(48 << 20)
	}
	log.Info("cmdtrack starting", append([]any{"version", Version}, cfg.logAttrs()...)...)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := consumer.NewMetrics(reg)

	broker, err := consumer.NewBroker(consumer.BrokerConfig{
		URL:          cfg.AmqpURL,
		Queues:       cfg.AmqpQueue,
		AccessKey:    cfg.AmqpAccessKey,
		AccessCode:   cfg.AmqpAccessCode,
		InstanceID:   cfg.AmqpInstanceID,
		CAFile:       cfg.AmqpCAFile,
		Credit:       cfg.AmqpCredit,
		IdleTimeout:  cfg.AmqpIdleTimeout,
		DialTimeout:  cfg.AmqpDialTimeout,
		ReconnectMin: cfg.AmqpReconnectMin,
		ReconnectMax: cfg.AmqpReconnectMax,
	}, log.With("component", "broker"), metrics)
	if err != nil {
		return usageError{err}
	}
	cons := consumer.New(broker, st, consumer.BatchConfig{
		Size:         cfg.BatchSize,
		Writers:      cfg.Writers,
		Wait:         cfg.BatchWait,
		MaxBodyBytes: cfg.MaxBodyBytes,
		RetryMin:     cfg.DBRetryMin,
		RetryMax:     cfg.DBRetryMax,
	}, log.With("component", "consumer"), metrics)

	var migrated atomic.Bool
	ready := func(rctx context.Context) error {
		if ctx.Err() != nil {
			return errors.New("stopping")
		}
		if !migrated.Load() {
			return errors.New("migrations not applied yet")
		}
		if err := cons.Ready(); err != nil {
			return err
		}
		return st.Ping(rctx)
	}
	var push *httppush.Server
	if cfg.HttpAddr != "" {
		push, err = httppush.Listen(httppush.Config{
			Addr: cfg.HttpAddr, CertFile: cfg.HttpTLSCert, KeyFile: cfg.HttpTLSKey, ClientCAFile: cfg.HttpClientCA,
			Token: cfg.HttpToken, MaxBodyBytes: cfg.MaxBodyBytes, Wait: cfg.HttpWait, MaxInFlight: cfg.HttpMaxInFlight,
			Decode: func(body []byte) store.Item { return consumer.DecodeItem(body, "http", cfg.MaxBodyBytes) },
		}, cons, log.With("component", "http"))
		if err != nil {
			return usageError{fmt.Errorf("HTTP push receiver: %w", err)}
		}
		log.Info("HTTP push receiver listening", "addr", push.Addr(), "tls", cfg.HttpTLSCert != "")
	}
	var srv *ops.Server
	if cfg.OpsAddr != "" {
		if srv, err = ops.Listen(cfg.OpsAddr, reg, ready, log); err != nil {
			return usageError{fmt.Errorf("ops server: %w", err)}
		}
		log.Info("ops server listening", "addr", srv.Addr())
	}

	// The ops server outlives the consumer's drain, so that readiness says
	// "stopping" and metrics stay visible until the very end.
	opsCtx, stopOps := context.WithCancel(context.WithoutCancel(ctx))
	defer stopOps()
	// runCtx ends with ctx, or when the worker stops on its own (a fatal
	// error), so that nothing keeps the process up without a consumer.
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	started := make(chan struct{})
	var g errgroup.Group
	if srv != nil {
		g.Go(func() error { return srv.Serve(opsCtx) })
	}
	if push != nil {
		// Stops taking pushes with ctx; those in flight get their outcome
		// from the consumer's drain.
		g.Go(func() error { return push.Serve(runCtx, cfg.ShutdownGrace+5*time.Second) })
	}
	g.Go(func() error {
		defer stopOps()
		defer stopRun()
		if cfg.MigrateOnStart {
			if err := migrateWithRetry(ctx, st, log); err != nil {
				if ctx.Err() != nil {
					log.Info("stopped before the database was reachable")
					return nil
				}
				return err
			}
		}
		migrated.Store(true)
		notify(log, sdReady)
		close(started)
		err := cons.Run(ctx, cfg.ShutdownGrace)
		if err == nil {
			log.Info("cmdtrack stopped cleanly")
		}
		return err
	})
	g.Go(func() error {
		// Pings begin once READY=1 is sent, so systemd hears them in order.
		select {
		case <-started:
			watchdog(opsCtx, cons, log)
		case <-opsCtx.Done():
		}
		return nil
	})
	g.Go(func() error { runRetention(runCtx, cfg, st, log); return nil })
	context.AfterFunc(ctx, func() { notify(log, sdStopping) })
	return g.Wait()
}

// runRetention prunes old rows every RetentionInterval until ctx ends. A
// failed run is logged and tried again at the next tick.
func runRetention(ctx context.Context, cfg *Config, st *store.Store, log *slog.Logger) {
	r := store.Retention{
		History:     time.Duration(cfg.RetentionHistory),
		DeadLetters: time.Duration(cfg.RetentionDeadLetters),
		Commands:    time.Duration(cfg.RetentionCommands),
	}
	if r == (store.Retention{}) {
		return
	}
	t := time.NewTicker(cfg.RetentionInterval)
	defer t.Stop()
	for {
		res, err := st.Prune(ctx, r, time.Now())
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.Warn("retention run failed", "err", err)
		case res != (store.PruneResult{}):
			log.Info("retention deleted old rows", "history", res.History, "dead_letters", res.DeadLetters, "commands", res.Commands)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
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
		if class := store.ErrorClass(err); class != "connection" && class != "shutdown" && class != "resources" {
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
