package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
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
	"github.com/cmdtrack/cmdtrack/pipeline"
	"github.com/cmdtrack/cmdtrack/reconcile"
	"github.com/cmdtrack/cmdtrack/store"
	"github.com/cmdtrack/cmdtrack/upkeep"
)

// runWorker is `cmdtrack run`. Its life has three phases:
//
//  1. Assemble: every component is built and every listener bound before
//     anything runs, so that a bad setting fails the start with one line.
//  2. Run: one errgroup owns every goroutine. The ops server answers at once
//     (not ready until migrated); migrations are applied, waiting for the
//     database if need be; then READY=1, and the pipeline takes messages
//     from the broker and the HTTP inbox. Retention and the watchdog run
//     beside it, and, once READY=1 is sent, the reconciler (when
//     CMDTRACK_RECONCILE_INTERVAL is set).
//  3. Stop, when ctx ends (SIGTERM/SIGINT) or any component fails for good:
//     readiness turns to "stopping" and systemd hears STOPPING=1; intake
//     ends (links stop receiving, the push server takes no new requests)
//     and the reconciler stops with it (a call in flight is abandoned,
//     nothing of it written); the pipeline writes and settles what it holds
//     within the shutdown grace; the broker connection closes; the ops
//     server stops last, so that readiness and metrics stay visible until
//     the end.
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

	// Phase 1: assemble.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	broker, err := consumer.NewBroker(consumer.BrokerConfig{
		URL:              cfg.AMQPURL,
		Queues:           cfg.AMQPQueue,
		AccessKey:        cfg.AMQPAccessKey,
		AccessCode:       cfg.AMQPAccessCode,
		InstanceID:       cfg.AMQPInstanceID,
		CAFile:           cfg.AMQPCAFile,
		Credit:           cfg.AMQPCredit,
		MaxBytes:         cfg.AMQPMaxBytes,
		BacklogRetention: cfg.AMQPBacklogRetention,
		Watermarks:       st,
		Limits:           cfg.limits(),
		IdleTimeout:      cfg.AMQPIdleTimeout,
		DialTimeout:      cfg.AMQPDialTimeout,
		ReconnectMin:     cfg.AMQPReconnectMin,
		ReconnectMax:     cfg.AMQPReconnectMax,
	}, log.With("component", "broker"), consumer.NewMetrics(reg))
	if err != nil {
		return usageError{err}
	}
	pipe := pipeline.New(st, pipeline.Config{
		BatchSize:    cfg.BatchSize,
		BatchWait:    cfg.BatchWait,
		Writers:      cfg.Writers,
		RetryMin:     cfg.DBRetryMin,
		RetryMax:     cfg.DBRetryMax,
		StallTimeout: cfg.StallTimeout,
	}, log.With("component", "pipeline"), pipeline.NewMetrics(reg))
	sources := []pipeline.Source{broker}

	var push *httppush.Server
	if cfg.HTTPAddr != "" {
		inbox := pipeline.NewInbox()
		sources = append(sources, inbox)
		push, err = httppush.Listen(httppush.Config{
			Addr: cfg.HTTPAddr, CertFile: cfg.HTTPTLSCert, KeyFile: cfg.HTTPTLSKey, ClientCAFile: cfg.HTTPClientCA,
			Token: cfg.HTTPToken, Limits: cfg.limits(), Wait: cfg.HTTPWait,
			MaxInFlight: cfg.HTTPMaxInFlight, MaxBytesInFlight: cfg.HTTPMaxBytesInFlight,
			MaxConns: cfg.HTTPMaxConns, HeaderTimeout: cfg.HTTPHeaderTimeout,
			AllowUnauthenticated: cfg.HTTPAllowUnauthenticated,
		}, inbox, log.With("component", "http"))
		if err != nil {
			return listenError("HTTP push receiver (CMDTRACK_HTTP_ADDR)", err)
		}
		log.Info("HTTP push receiver listening", "addr", push.Addr(), "tls", cfg.HTTPTLSCert != "")
		if cfg.HTTPToken == "" && cfg.HTTPClientCA == "" {
			log.Warn("the HTTP push receiver accepts pushes from anyone who reaches it (CMDTRACK_HTTP_ALLOW_UNAUTHENTICATED=true)",
				"addr", push.Addr())
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	var migrated atomic.Bool
	ready := func(rctx context.Context) error {
		if gctx.Err() != nil {
			return errors.New("stopping")
		}
		if !migrated.Load() {
			return errors.New("migrations not applied yet")
		}
		if err := broker.Ready(); err != nil {
			return err
		}
		if err := pipe.Ready(); err != nil {
			return err
		}
		return st.Ping(rctx)
	}
	// Liveness fails only for a wedge: messages in hand, the broker there to
	// take their accepts, and nothing stored or settled for StallTimeout.
	live := func(context.Context) error {
		if !broker.Connected() {
			return nil
		}
		return pipe.Stalled()
	}

	up := newUpkeep(cfg, st, log.With("component", "upkeep"), upkeep.NewMetrics(reg))
	var rec *reconcile.Reconciler
	if cfg.ReconcileInterval > 0 {
		if rec, err = newReconciler(cfg, st, log.With("component", "reconcile"), reconcile.NewMetrics(reg)); err != nil {
			return usageError{fmt.Errorf("reconciler: %w", err)}
		}
	}

	var opsSrv *ops.Server
	if cfg.OpsAddr != "" {
		if opsSrv, err = ops.Listen(cfg.OpsAddr, reg, ready, live, log); err != nil {
			return listenError("ops server (CMDTRACK_OPS_ADDR)", err)
		}
		log.Info("ops server listening", "addr", opsSrv.Addr())
	}

	// Phase 2: run. serveCtx outlives the drain (phase 3) and ends once the
	// pipeline has returned.
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServing()
	context.AfterFunc(gctx, func() { notify(log, sdStopping) })
	if opsSrv != nil {
		g.Go(func() error { return opsSrv.Serve(serveCtx) })
	}
	if push != nil {
		// Stops taking pushes when intake ends; those in flight get their
		// outcome from the pipeline's drain.
		g.Go(func() error { return push.Serve(gctx, cfg.ShutdownGrace+5*time.Second) })
	}
	started := make(chan struct{})
	g.Go(func() error {
		defer stopServing()
		if cfg.MigrateOnStart {
			if err := migrateWithRetry(gctx, st, log); err != nil {
				if gctx.Err() != nil {
					log.Info("stopped before the database was reachable")
					return nil
				}
				return err
			}
		}
		migrated.Store(true)
		notify(log, sdReady)
		close(started)
		err := pipe.Run(gctx, cfg.ShutdownGrace, sources...)
		closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if cerr := broker.Close(closeCtx); cerr != nil {
			log.Debug("closing broker connection", "err", cerr)
		}
		if err == nil {
			log.Info("cmdtrack stopped cleanly")
		}
		return err
	})
	g.Go(func() error {
		// Pings begin once READY=1 is sent, so systemd hears them in order.
		select {
		case <-started:
			watchdog(serveCtx, live, log)
		case <-serveCtx.Done():
		}
		return nil
	})
	g.Go(func() error {
		// Partitions for today and ahead right away: the schema may have
		// been migrated long ago, and no replica kept it since.
		if !cfg.Upkeep {
			return nil
		}
		select {
		case <-started:
			up.Loop(gctx)
		case <-gctx.Done():
		}
		return nil
	})
	if rec != nil {
		g.Go(func() error {
			// After migrations: it reads and writes the tables. It stops
			// with intake, since what it writes is a kind of intake.
			select {
			case <-started:
				rec.Loop(gctx, cfg.ReconcileInterval, cfg.ReconcileThreshold)
			case <-gctx.Done():
			}
			return nil
		})
	}
	return g.Wait()
}

// listenError says why a listener could not be had. A malformed address or
// certificate is a configuration error (exit status 2, not retried by
// systemd); an address in use, or any other failure to bind, may pass on a
// later start (exit status 1).
func listenError(what string, err error) error {
	err = fmt.Errorf("%s: %w", what, err)
	var addrErr *net.AddrError
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "listen" && !errors.As(err, &addrErr) {
		return err
	}
	return usageError{err}
}
