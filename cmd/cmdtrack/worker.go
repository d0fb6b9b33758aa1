package main

import (
	"context"
	"encoding/json"
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

	"github.com/cmdtrack/cmdtrack/console"
	"github.com/cmdtrack/cmdtrack/consumer"
	"github.com/cmdtrack/cmdtrack/httppush"
	"github.com/cmdtrack/cmdtrack/internal/lifecycle"
	"github.com/cmdtrack/cmdtrack/ops"
	"github.com/cmdtrack/cmdtrack/outcome"
	"github.com/cmdtrack/cmdtrack/pipeline"
	"github.com/cmdtrack/cmdtrack/reconcile"
	"github.com/cmdtrack/cmdtrack/store"
	"github.com/cmdtrack/cmdtrack/upkeep"
	"github.com/cmdtrack/cmdtrack/webhook"
)

// The worker's stop phases, in order.
const (
	// stopIntake begins the stop (SIGTERM/SIGINT, or a component failing
	// for good): intake ends (links stop receiving, the push server takes
	// no new requests), the reconciler and the upkeep stop (a call in
	// flight is abandoned, nothing of it written), and the pipeline writes
	// and settles what it holds within the shutdown grace, then closes its
	// sources (the broker connection).
	stopIntake lifecycle.Phase = iota
	// stopServing comes once all of intake has returned: the ops server
	// and the watchdog, so that readiness and metrics stay visible until
	// the end.
	stopServing
)

// worker is `cmdtrack run`, assembled: every part built and every listener
// bound, so that a bad setting fails the start with one line before
// anything runs.
type worker struct {
	cfg      *Config
	st       *store.Store
	log      *slog.Logger
	pipe     *pipeline.Pipeline
	sources  []pipeline.Source
	push     *httppush.Server // nil: CMDTRACK_HTTP_ADDR is off
	up       *upkeep.Upkeep
	rec      *reconcile.Reconciler // nil: CMDTRACK_RECONCILE_INTERVAL is 0
	ops      *ops.Server           // nil: CMDTRACK_OPS_ADDR is off
	exporter *outcome.Exporter
	hooks    *webhook.Deliverer // nil: no webhook endpoints
	hookSt   *store.Store       // the deliverer's own pool; nil without endpoints
	routes   []store.WebhookRoute
	migrated atomic.Bool
	group    *lifecycle.Group
}

// components are the worker's parts, in the order they start; each says
// in which phase it stops. The ops server answers at once (not ready until
// migrated); migrations are applied, waiting for the database if need be;
// then READY=1, and what needs the schema starts.
func (w *worker) components() []lifecycle.Component {
	return []lifecycle.Component{
		{Name: "systemd stopping", Run: w.notifyStopping, Stop: stopIntake},
		{Name: "ops server", Run: w.serveOps, Stop: stopServing},
		// Stops taking pushes when intake ends; those in flight get their
		// outcome from the pipeline's drain.
		{Name: "HTTP push receiver", Run: w.servePush, Stop: stopIntake},
		{Name: "migrations", Start: w.migrate},
		{Name: "pipeline", Run: w.runPipeline, Stop: stopIntake},
		// Pings begin once READY=1 is sent, so systemd hears them in order.
		{Name: "watchdog", Run: w.watchdog, Stop: stopServing},
		{Name: "upkeep", Run: w.upkeep, Stop: stopIntake},
		// It keeps the metrics lease until the end, so that the database's
		// metrics stay visible as long as the ops server is.
		{Name: "outcome exporter", Run: w.exportOutcomes, Stop: stopServing},
		// It stops with intake, since what it writes is a kind of intake.
		{Name: "reconciler", Run: w.reconcile, Stop: stopIntake},
		// Requests in flight finish within CMDTRACK_WEBHOOK_TIMEOUT and are
		// settled; what a stop cuts is delivered again after its lease.
		{Name: "webhook deliverer", Run: w.deliverWebhooks, Stop: stopIntake},
	}
}

// runWorker is `cmdtrack run`: it assembles the worker, then runs its
// components until ctx ends (SIGTERM/SIGINT) or one fails for good, and
// stops them phase by phase (see components and the stop phases).
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
	w, err := assemble(ctx, cfg, st, log)
	if err != nil {
		return err
	}
	if w.hookSt != nil {
		defer w.hookSt.Close()
	}
	return w.group.Run(ctx)
}

// assemble builds every part of the worker and binds its listeners.
func assemble(ctx context.Context, cfg *Config, st *store.Store, log *slog.Logger) (*worker, error) {
	w := &worker{cfg: cfg, st: st, log: log}
	w.group = lifecycle.New(log.With("component", "lifecycle"), w.components()...)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	st.OnChange(outcome.NewMetrics(reg).Record)
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
		return nil, usageError{err}
	}
	w.pipe = pipeline.New(st, pipeline.Config{
		BatchSize:     cfg.BatchSize,
		BatchWait:     cfg.BatchWait,
		Writers:       cfg.Writers,
		RetryMin:      cfg.DBRetryMin,
		RetryMax:      cfg.DBRetryMax,
		DatabaseHosts: store.Hosts(cfg.DatabaseURL),
		StallTimeout:  cfg.StallTimeout,
	}, log.With("component", "pipeline"), pipeline.NewMetrics(reg))
	w.sources = []pipeline.Source{broker}

	if cfg.HTTPAddr != "" {
		inbox := pipeline.NewInbox()
		w.sources = append(w.sources, inbox)
		w.push, err = httppush.Listen(httppush.Config{
			Addr: cfg.HTTPAddr, CertFile: cfg.HTTPTLSCert, KeyFile: cfg.HTTPTLSKey, ClientCAFile: cfg.HTTPClientCA,
			Token: cfg.HTTPToken, Limits: cfg.limits(), Wait: cfg.HTTPWait,
			MaxInFlight: cfg.HTTPMaxInFlight, MaxBytesInFlight: cfg.HTTPMaxBytesInFlight,
			MaxConns: cfg.HTTPMaxConns, HeaderTimeout: cfg.HTTPHeaderTimeout,
			AllowUnauthenticated: cfg.HTTPAllowUnauthenticated,
		}, inbox, log.With("component", "http"))
		if err != nil {
			return nil, listenError("HTTP push receiver (CMDTRACK_HTTP_ADDR)", err)
		}
		log.Info("HTTP push receiver listening", "addr", w.push.Addr(), "tls", cfg.HTTPTLSCert != "")
		if cfg.HTTPToken == "" && cfg.HTTPClientCA == "" {
			log.Warn("the HTTP push receiver accepts pushes from anyone who reaches it (CMDTRACK_HTTP_ALLOW_UNAUTHENTICATED=true)",
				"addr", w.push.Addr())
		}
	}

	w.up = newUpkeep(cfg, st, log.With("component", "upkeep"), upkeep.NewMetrics(reg))
	endpoints, err := cfg.webhookEndpoints()
	if err != nil {
		return nil, usageError{err} // validated already
	}
	// The fold dispatches the outcome events to the endpoints' outboxes
	// (README "Webhooks"); every replica delivers them.
	w.routes = webhook.Routes(endpoints)
	exportOpts := outcome.ExporterOptions{Routes: w.routes}
	var leader func() bool
	// Only a replica serving /metrics competes for the metrics lease.
	if cfg.OpsAddr != "" {
		lease := st.Lease(outcome.LeaseName)
		leader = lease.Held
		w.exporter = outcome.NewExporter(lease, st, log.With("component", "outcome"), exportOpts)
		reg.MustRegister(outcome.NewDBCollector(st, lease.Held, cfg.ReconcileThreshold, cfg.MetricsProductLabel, log.With("component", "outcome")))
	} else {
		w.exporter = outcome.NewExporter(nil, st, log.With("component", "outcome"), exportOpts)
	}
	if len(endpoints) > 0 {
		// A pool of its own (CMDTRACK_WEBHOOK_DB_CONNS): each endpoint's
		// claims, row reads and settles wait for its connections, never
		// ahead of the writers in the shared pool; their plans generic,
		// made once per connection rather than each call.
		if w.hookSt, err = store.Open(ctx, cfg.DatabaseURL, store.Options{MaxConns: cfg.WebhookDBConns, GenericPlans: true}); err != nil {
			return nil, usageError{err}
		}
		hookSt := w.hookSt
		data := func(ctx context.Context, typ, subject string) (json.RawMessage, error) {
			return console.OutcomeData(ctx, hookSt.Pool(), typ, subject)
		}
		hookCfg := cfg.webhooks(endpoints)
		// The data path first: while it drains a backlog, the deliveries
		// wait (CMDTRACK_WEBHOOK_BACKLOG_LAG).
		hookCfg.Busy = w.pipe.Busy
		// A claim's rows in one statement per kind, not one per event.
		hookCfg.Rows = func(ctx context.Context, evs []store.WebhookEvent) ([]json.RawMessage, error) {
			subjects := make([]console.OutcomeSubject, len(evs))
			for i, ev := range evs {
				subjects[i] = console.OutcomeSubject{Type: ev.Type, Subject: ev.Subject}
			}
			return console.OutcomeDataMany(ctx, hookSt.Pool(), subjects)
		}
		if w.hooks, err = webhook.New(hookSt, data, hookCfg, log.With("component", "webhooks"), webhook.NewMetrics(reg)); err != nil {
			hookSt.Close()
			return nil, usageError{err}
		}
		if leader != nil {
			names := make([]string, len(endpoints))
			for i, e := range endpoints {
				names[i] = e.Name
			}
			reg.MustRegister(webhook.NewBacklogCollector(st, names, leader, log.With("component", "webhooks")))
		}
		log.Info("delivering outcome events to webhooks", "endpoints", len(endpoints))
	}
	if cfg.ReconcileInterval > 0 {
		if w.rec, err = newReconciler(cfg, st, log.With("component", "reconcile"), reconcile.NewMetrics(reg)); err != nil {
			return nil, usageError{fmt.Errorf("reconciler: %w", err)}
		}
	}

	if cfg.OpsAddr != "" {
		if w.ops, err = ops.Listen(cfg.OpsAddr, reg, w.ready, w.live, log); err != nil {
			return nil, listenError("ops server (CMDTRACK_OPS_ADDR)", err)
		}
		log.Info("ops server listening", "addr", w.ops.Addr())
	}
	return w, nil
}

// ready is /readyz.
func (w *worker) ready(ctx context.Context) error {
	if w.group.Stopping() {
		return errors.New("stopping")
	}
	if !w.migrated.Load() {
		return errors.New("migrations not applied yet")
	}
	for _, s := range w.sources {
		if err := s.Ready(); err != nil {
			return err
		}
	}
	if err := w.pipe.Ready(); err != nil {
		return err
	}
	return w.st.Ping(ctx)
}

// live is /healthz and the watchdog's test. It fails only for a wedge:
// messages in hand, every source there to take their settles (the broker's
// accepts), and nothing stored or settled for StallTimeout.
func (w *worker) live(context.Context) error {
	for _, s := range w.sources {
		if !s.Connected() {
			return nil
		}
	}
	return w.pipe.Stalled()
}

func (w *worker) notifyStopping(ctx context.Context) error {
	<-ctx.Done()
	notify(w.log, sdStopping)
	return nil
}

func (w *worker) serveOps(ctx context.Context) error {
	if w.ops == nil {
		return nil
	}
	return w.ops.Serve(ctx)
}

func (w *worker) servePush(ctx context.Context) error {
	if w.push == nil {
		return nil
	}
	return w.push.Serve(ctx, w.cfg.ShutdownGrace+5*time.Second)
}

// migrate applies migrations (CMDTRACK_MIGRATE_ON_START), waiting for the
// database if need be, then tells systemd the worker is ready.
func (w *worker) migrate(ctx context.Context) error {
	if w.cfg.MigrateOnStart {
		if err := migrateWithRetry(ctx, w.st, w.log); err != nil {
			if ctx.Err() != nil {
				w.log.Info("stopped before the database was reachable")
				return nil
			}
			return err
		}
	}
	if len(w.routes) > 0 {
		if err := w.writeRoutes(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	w.migrated.Store(true)
	notify(w.log, sdReady)
	return nil
}

// writeRoutes makes this worker's webhook settings the routes the fold
// dispatches with, whichever replica folds (README "Webhooks"): the newest
// settings win. An endpoint they lack loses its route, and its pending
// events fail, kept and replayable, saying why. It waits for the database
// if need be.
func (w *worker) writeRoutes(ctx context.Context) error {
	host, _ := os.Hostname()
	reason := fmt.Sprintf("its endpoint is not in the webhook settings (CMDTRACK_WEBHOOK_URL, CMDTRACK_WEBHOOKS_FILE) of the worker started on %s at %s: "+
		"give it back to the workers and run cmdtrack webhooks replay -endpoint NAME to send these again",
		host, time.Now().UTC().Format(time.RFC3339))
	for attempt := 1; ; attempt++ {
		dropped, failed, err := w.st.SetWebhookRoutes(ctx, w.routes, reason)
		if err == nil {
			if len(dropped) > 0 {
				w.log.Warn("webhook endpoints not in this worker's settings dropped; their pending events failed (cmdtrack webhooks replay sends them again)",
					"endpoints", dropped, "failed", failed)
			}
			return nil
		}
		if ctx.Err() != nil || !store.Unavailable(err) {
			return fmt.Errorf("write the webhook routes: %w", err)
		}
		if attempt == 1 {
			w.log.Warn("database not reachable; waiting to write the webhook routes", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(time.Duration(attempt)*time.Second, 10*time.Second)):
		}
	}
}

// runPipeline consumes until ctx ends, drains, then closes the sources
// (the broker connection, whose links the drain settled on).
func (w *worker) runPipeline(ctx context.Context) error {
	err := w.pipe.Run(ctx, w.cfg.ShutdownGrace, w.sources...)
	// ctx has ended: the closes have a deadline of their own.
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for _, s := range w.sources {
		if cerr := s.Close(closeCtx); cerr != nil {
			w.log.Debug("closing a source", "err", cerr)
		}
	}
	if err == nil {
		w.log.Info("cmdtrack stopped cleanly")
	}
	return err
}

func (w *worker) watchdog(ctx context.Context) error {
	watchdog(ctx, w.live, w.log)
	return nil
}

// upkeep keeps the schema in shape until ctx ends (CMDTRACK_UPKEEP).
func (w *worker) upkeep(ctx context.Context) error {
	if !w.cfg.Upkeep {
		return nil
	}
	w.up.Loop(ctx)
	return nil
}

// exportOutcomes holds the metrics lease while it can (one replica exports
// the database's metrics) and folds the outcome events meanwhile.
func (w *worker) exportOutcomes(ctx context.Context) error {
	w.exporter.Loop(ctx)
	return nil
}

// deliverWebhooks delivers the outboxes until ctx ends (README
// "Webhooks").
func (w *worker) deliverWebhooks(ctx context.Context) error {
	if w.hooks == nil {
		return nil
	}
	return w.hooks.Run(ctx)
}

func (w *worker) reconcile(ctx context.Context) error {
	if w.rec == nil {
		return nil
	}
	w.rec.Loop(ctx, w.cfg.ReconcileInterval, w.cfg.ReconcileThreshold)
	return nil
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
