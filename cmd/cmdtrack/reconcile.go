package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/reconcile"
	"github.com/cmdtrack/cmdtrack/store"
)

// What a refusal by the API asks the operator to check, by the settings'
// names.
const (
	apiAuthHint = "check CMDTRACK_API_ACCESS_KEY and CMDTRACK_API_SECRET_KEY (or CMDTRACK_API_TOKEN), " +
		"CMDTRACK_API_PROJECT_ID and CMDTRACK_API_INSTANCE_ID, the IAM permission iotda:asynccommands:query (and, for messages, the one for ShowDeviceMessage), and the host clock"
	apiEndpointHint = "check CMDTRACK_API_ENDPOINT (the https address of your instance's application API) and CMDTRACK_API_CA_FILE"
)

// newReconciler is the reconciler the configuration describes, counting in
// m (nil: nowhere).
func newReconciler(cfg *Config, st *store.Store, log *slog.Logger, m *reconcile.Metrics) (*reconcile.Reconciler, error) {
	client, err := newAPIClient(cfg)
	if err != nil {
		return nil, err
	}
	return reconcile.New(client, st, reconcile.Config{
		Rate: cfg.ReconcileRate, Limits: cfg.limits(), AuthHint: apiAuthHint, EndpointHint: apiEndpointHint,
	}, log, m), nil
}

// reconcileFlags are `cmdtrack reconcile`'s arguments, read before the
// configuration so that -h needs none.
type reconcileFlags struct {
	sel reconcile.Selection
	// threshold was given with -threshold; zero takes CMDTRACK_RECONCILE_THRESHOLD.
	threshold time.Duration
	window    bool
	verbose   bool
}

// parseReconcileFlags reads reconcile's arguments; -h prints their usage on
// stdout and returns flag.ErrHelp.
func parseReconcileFlags(args []string, stdout, stderr io.Writer) (action, error) {
	var f reconcileFlags
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&f.threshold, "threshold", 0, "check commands not final that have not moved for this long (default CMDTRACK_RECONCILE_THRESHOLD, 1h)")
	since := fs.String("since", "", "check commands that may have changed from this time on (RFC 3339 or yyyyMMddTHHmmssZ), e.g. a broker outage's start")
	until := fs.String("until", "", "... up to this time (default: now)")
	fs.BoolVar(&f.verbose, "v", false, "print one line per command the API's answer changed")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: cmdtrack reconcile [-threshold 1h | -since TIME [-until TIME]] [-v] [COMMAND_ID ...]

Asks IoTDA's API (ShowAsyncDeviceCommand) about commands and merges each answer
like a notification. Without arguments: commands not final that have not moved
for -threshold, but moved within cmdtrack_settings.stuck_horizon (3 days), and
device messages PENDING as long (ShowDeviceMessage). With -since/-until: commands not final that may have changed in
that window. With command ids: those commands, whatever their status.
Configuration (CMDTRACK_DATABASE_URL, CMDTRACK_API_*) comes from the environment,
see cmdtrack -h.

Flags:
`)
		fs.PrintDefaults()
	}
	if helpAsked(args) {
		fs.SetOutput(stdout)
		fs.Usage()
		return nil, flag.ErrHelp
	}
	if err := fs.Parse(args); err != nil {
		return nil, usageError{err}
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	var err error
	switch {
	case fs.NArg() > 0 && (set["threshold"] || set["since"] || set["until"]):
		return nil, usageError{errors.New("reconcile: name command ids, or choose with -threshold or -since/-until, not both")}
	case set["threshold"] && (set["since"] || set["until"]):
		return nil, usageError{errors.New("reconcile: -threshold and -since/-until choose commands differently; use one")}
	case set["threshold"] && f.threshold <= 0:
		return nil, usageError{errors.New("reconcile: -threshold must be positive")}
	case fs.NArg() > 0:
		f.sel.IDs = fs.Args()
	case set["since"] || set["until"]:
		f.window = true
		if f.sel.Since, err = flagTime("since", *since); err != nil {
			return nil, err
		}
		if f.sel.Until, err = flagTime("until", *until); err != nil {
			return nil, err
		}
		if !f.sel.Since.IsZero() && !f.sel.Until.IsZero() && !f.sel.Since.Before(f.sel.Until) {
			return nil, usageError{errors.New("reconcile: -since must be before -until")}
		}
	}
	return func(ctx context.Context, e *env) error { return reconcileCmd(ctx, e.cfg, e.st, &f, e.stdout, e.log) }, nil
}

// reconcileCmd is `cmdtrack reconcile`: one run, then a summary line.
// ctx (SIGTERM, SIGINT) cuts the run short; what was stored stays.
func reconcileCmd(ctx context.Context, cfg *Config, st *store.Store, f *reconcileFlags, stdout io.Writer, log *slog.Logger) error {
	sel := f.sel
	if len(sel.IDs) == 0 && !f.window {
		sel.Threshold = cmp.Or(f.threshold, cfg.ReconcileThreshold)
	}
	r, err := newReconciler(cfg, st, log, nil)
	if err != nil {
		return usageError{fmt.Errorf("reconcile: %w", err)}
	}
	sum, err := r.Run(ctx, sel, func(c reconcile.Check) {
		switch {
		case !f.verbose || c.Outcome != reconcile.Updated:
		case c.MessageID != "":
			fmt.Fprintf(stdout, "updated message %s on device %s: stored %s, the API says %s\n", c.MessageID, c.DeviceID, c.Stored, c.API)
		default:
			fmt.Fprintf(stdout, "updated %s on device %s: stored %s, the API says %s\n", c.CommandID, c.DeviceID, c.Stored, c.API)
		}
	})
	if !errors.Is(err, reconcile.ErrBusy) {
		fmt.Fprintf(stdout, "reconcile: %s\n", sum)
	}
	switch {
	case ctx.Err() != nil:
		return errors.New("reconcile: interrupted; what was checked is stored, run it again for the rest")
	case err != nil:
		return fmt.Errorf("reconcile: %w", err)
	case sum.Failed > 0:
		return fmt.Errorf("reconcile: %d commands could not be checked (the log says why); nothing was written for them, run it again later", sum.Failed)
	}
	return nil
}

// flagTime parses a -since/-until value ("" is zero).
func flagTime(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := notification.ParseTime(v)
	if err != nil {
		return time.Time{}, usageError{fmt.Errorf("reconcile: -%s: %w", name, err)}
	}
	return t, nil
}
