package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/cmdtrack/cmdtrack/store"
)

// parseWebhooksFlags reads `cmdtrack webhooks replay [-endpoint NAME] [ID
// ...]`; -h prints its usage on stdout and returns flag.ErrHelp.
func parseWebhooksFlags(args []string, stdout, stderr io.Writer) (action, error) {
	fs := flag.NewFlagSet("webhooks replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	endpoint := fs.String("endpoint", "", "only this endpoint's events (its name: default for CMDTRACK_WEBHOOK_URL's)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: cmdtrack webhooks replay [-endpoint NAME] [ID ...]

Sends webhook events that failed for good (past CMDTRACK_WEBHOOK_RETRY_FOR)
again: they go back to the outbox, due now, and the workers deliver them with
a whole retry window of their own, counted from now. Without ids: every failed
event (of -endpoint, if given); with ids (the first column of the console's
/webhooks): those. Events that are not failed are left alone. Configuration
(CMDTRACK_DATABASE_URL) comes from the environment, see cmdtrack -h.

Or:    cmdtrack webhooks forget NAME

Stops webhooks to endpoint NAME: its route is deleted, so that no event is
dispatched to it any more, and its pending events fail for good (kept, shown
and replayable). Remove it from the workers' settings first: a worker that
starts with it in CMDTRACK_WEBHOOK_URL or CMDTRACK_WEBHOOKS_FILE routes to it
again.

Flags of replay:
`)
		fs.PrintDefaults()
	}
	if helpAsked(args) {
		fs.SetOutput(stdout)
		fs.Usage()
		return nil, flag.ErrHelp
	}
	if len(args) > 0 && args[0] == "forget" {
		if len(args) != 2 || strings.TrimSpace(args[1]) == "" || strings.HasPrefix(args[1], "-") {
			return nil, usageError{errors.New("webhooks forget: name one endpoint: cmdtrack webhooks forget NAME (default for CMDTRACK_WEBHOOK_URL's)")}
		}
		name := strings.TrimSpace(args[1])
		return func(ctx context.Context, e *env) error { return forgetWebhooks(ctx, e.st, name, e.stdout) }, nil
	}
	if len(args) == 0 || args[0] != "replay" {
		return nil, usageError{errors.New("webhooks: say what to do: cmdtrack webhooks replay [-endpoint NAME] [ID ...], or cmdtrack webhooks forget NAME (see cmdtrack webhooks -h)")}
	}
	if err := fs.Parse(args[1:]); err != nil {
		return nil, usageError{err}
	}
	var ids []int64
	for _, a := range fs.Args() {
		id, err := strconv.ParseInt(a, 10, 64)
		if err != nil || id <= 0 {
			return nil, usageError{fmt.Errorf("webhooks replay: %q is not an event id: give the ids the console's /webhooks lists (its first column)", a)}
		}
		ids = append(ids, id)
	}
	ep := strings.TrimSpace(*endpoint)
	return func(ctx context.Context, e *env) error { return replayWebhooks(ctx, e.st, ep, ids, e.stdout) }, nil
}

// replayWebhooks is `cmdtrack webhooks replay`: one statement
// (store.ReplayWebhooks), then how many it sent back. A name the outbox
// does not know is a mistake worth saying, not a quiet zero.
func replayWebhooks(ctx context.Context, st *store.Store, endpoint string, ids []int64, stdout io.Writer) error {
	n, err := st.ReplayWebhooks(ctx, endpoint, ids)
	if err != nil {
		return fmt.Errorf("webhooks replay: %w", err)
	}
	of := ""
	if endpoint != "" {
		of = " of endpoint " + endpoint
	}
	fmt.Fprintf(stdout, "webhooks replay: %d failed events%s sent back to the outbox; the workers deliver them\n", n, of)
	if len(ids) > 0 && n < int64(len(ids)) {
		fmt.Fprintf(stdout, "webhooks replay: %d of the %d ids named were not failed%s (delivered, pending or never there): left alone\n",
			int64(len(ids))-n, len(ids), of)
	}
	if n > 0 || endpoint == "" {
		return nil
	}
	backlogs, err := st.WebhookBacklogs(ctx)
	if err != nil {
		return fmt.Errorf("webhooks replay: %w", err)
	}
	var names []string
	for _, b := range backlogs {
		if b.Endpoint == endpoint {
			return nil
		}
		names = append(names, b.Endpoint)
	}
	known := "none has events yet"
	if len(names) > 0 {
		known = "it knows " + strings.Join(names, ", ")
	}
	return usageError{fmt.Errorf("webhooks replay: the outbox knows no endpoint %q (%s): give -endpoint a name from CMDTRACK_WEBHOOKS_FILE, or default", endpoint, known)}
}

// forgetWebhooks is `cmdtrack webhooks forget NAME`: one transaction
// (store.ForgetWebhookEndpoint), then what it did.
func forgetWebhooks(ctx context.Context, st *store.Store, name string, stdout io.Writer) error {
	reason := fmt.Sprintf("endpoint forgotten (cmdtrack webhooks forget %s) at %s: cmdtrack webhooks replay -endpoint %s sends these again once it is configured",
		name, time.Now().UTC().Format(time.RFC3339), name)
	failed, known, err := st.ForgetWebhookEndpoint(ctx, name, reason)
	if err != nil {
		return fmt.Errorf("webhooks forget: %w", err)
	}
	if !known {
		return usageError{fmt.Errorf("webhooks forget: the outbox knows no endpoint %q: give a name the console's /webhooks lists", name)}
	}
	fmt.Fprintf(stdout, "webhooks forget: endpoint %s has no route now; %d pending events failed for good (replayable). "+
		"Take it out of CMDTRACK_WEBHOOK_URL or CMDTRACK_WEBHOOKS_FILE too: a worker that starts with it routes to it again\n", name, failed)
	return nil
}
