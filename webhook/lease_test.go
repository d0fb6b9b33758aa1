package webhook_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/store"
	"github.com/cmdtrack/cmdtrack/webhook"
)

// A settle is tried until the event's lease ends as the database has it
// (WebhookEvent.LeaseEnd), not until a time the deliverer reckons from its
// own lease setting; and it gives the claim's token (review finding 5).
// Here the database leases for 50 ms whatever is asked, the settles fail:
// the deliverer leaves the event to its lease at once, where it used to try
// for Lease/2 (half an hour).
func TestSettleEndsWithTheDatabasesLease(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	f := newFakeOutbox()
	f.lease = 50 * time.Millisecond
	f.settleDown = errors.New("connection refused")
	id := f.add("hooks", store.KindFinished, "c1", time.Now())
	s := start(t, f, rc, secret, webhook.Config{Lease: time.Hour, DBRetryMax: 10 * time.Millisecond})
	waitFor(t, f, "the delivered event left to its lease", func() bool {
		return strings.Contains(s.log.String(), webhook.LogLeftToLease)
	})
	rc.check()

	// Settles work again: the event, claimed again (a new token), goes,
	// and a settle with an old token would have changed nothing.
	f.mu.Lock()
	f.settleDown = nil
	f.mu.Unlock()
	waitFor(t, f, "delivered", f.empty)
	require.Contains(t, f.deliveredIDs(), id)
	for _, d := range rc.deliveries() {
		require.Equal(t, "evt_1_1", d.id, "every attempt with the one webhook-id")
	}
}

// The settles change an event only with its claim's token: a late one,
// after another claim, changes nothing (the fake keeps the store's rule).
func TestLateSettleChangesNothing(t *testing.T) {
	f := newFakeOutbox()
	id := f.add("hooks", store.KindFinished, "c1", time.Now())
	ctx := t.Context()
	first, err := f.ClaimWebhooks(ctx, "hooks", 1, time.Nanosecond, 0)
	require.NoError(t, err)
	second, err := f.ClaimWebhooks(ctx, "hooks", 1, time.Hour, 0)
	require.NoError(t, err)
	require.Len(t, second, 1)
	require.NoError(t, f.RetryWebhook(ctx, id, first[0].Attempts, time.Now(), "late"))
	require.NoError(t, f.FailWebhook(ctx, id, first[0].Attempts, "late"))
	require.NoError(t, f.WebhookDelivered(ctx, "hooks", []store.WebhookSettle{{ID: id, Attempts: first[0].Attempts}}))
	require.Equal(t, "pending", f.state(id))
	require.Equal(t, second[0].LeaseEnd, f.snapshot()[0].due)
}
