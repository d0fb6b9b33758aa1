package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/store"
	"github.com/cmdtrack/cmdtrack/webhook"
)

// A row that cannot be read for a reason of its own (a scan error, an
// unexpected NULL) is a failed attempt: tried again with backoff, counted,
// failed for good past the window, logged naming the event; not a
// database outage, and not the endpoint's fault.
func TestRowUnreadableIsAFailedAttempt(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	f := newFakeOutbox()
	recent := f.add("hooks", store.KindFinished, "c1", time.Now())
	old := f.add("hooks", store.KindFinished, "c2", time.Now().Add(-2*time.Hour))
	var broken atomic.Bool
	broken.Store(true)
	scan := errors.New("can't scan into dest[4] (col: result): cannot scan NULL into *string")
	data := func(ctx context.Context, typ, subject string) (json.RawMessage, error) {
		if broken.Load() {
			return nil, scan
		}
		return rows(ctx, typ, subject)
	}
	reg := prometheus.NewRegistry()
	s := startWith(t, f, rc, secret, webhook.Config{RetryFor: time.Hour}, data, webhook.NewMetrics(reg))
	waitFor(t, f, "the recent event tried again, the old one failed for good", func() bool {
		return len(f.retries(recent)) >= 2 && f.state(old) == "failed"
	})
	broken.Store(false)
	waitFor(t, f, "the recent event delivered", func() bool { return f.state(recent) == "" })
	s.stop()
	rc.check()

	want := "cmdtrack could not read the event's row: " + scan.Error()
	require.Equal(t, want, f.retries(recent)[0])
	require.Empty(t, f.retries(old))
	require.Equal(t, want, f.snapshot()[0].reason, "the old event's reason")
	require.Len(t, rc.deliveries(), 1, "no request without its row")
	require.GreaterOrEqual(t, testutil.ToFloat64(webhookCounter(t, reg, "retried")), 2.0)
	require.Equal(t, 1.0, testutil.ToFloat64(webhookCounter(t, reg, "failed")))
	log := s.log.String()
	require.Contains(t, log, `msg="`+webhook.LogRowUnreadable+`" endpoint=hooks webhook_id=evt_1_1 type=command.finished subject=c1`)
	require.Contains(t, log, `webhook_id=evt_2_1 type=command.finished subject=c2`)
	require.NotContains(t, log, webhook.LogDatabase, "not an outage")
	require.NotContains(t, log, webhook.LogEndpointFailing, "not the endpoint's fault")
}

// A connection error reading the row is the database away: no attempt
// made, nothing settled, the event left to its lease.
func TestRowDatabaseAway(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	f := newFakeOutbox()
	id := f.add("hooks", store.KindFinished, "c1", time.Now())
	var reads atomic.Int32
	refused := fmt.Errorf("failed to connect to `user=cmdtrack database=cmdtrack`: %w",
		&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
	data := func(context.Context, string, string) (json.RawMessage, error) {
		reads.Add(1)
		return nil, refused
	}
	s := startData(t, f, rc, secret, webhook.Config{}, data)
	waitFor(t, f, "the outage logged", func() bool { return strings.Contains(s.log.String(), webhook.LogDatabase) })
	s.stop()
	require.Equal(t, int32(1), reads.Load(), "tried once, then left to its lease")
	require.Empty(t, f.retries(id))
	require.Equal(t, "pending", f.state(id))
	require.Empty(t, rc.deliveries())
	require.NotContains(t, s.log.String(), webhook.LogRowUnreadable)
}

// Once the stop has begun no request starts: an event whose row was read
// meanwhile is left to its lease, so that the stop waits for no more than
// the requests already sent (Config.StopBound).
func TestNoRequestAfterStop(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	f := newFakeOutbox()
	id := f.add("hooks", store.KindFinished, "c1", time.Now())
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	data := func(ctx context.Context, typ, subject string) (json.RawMessage, error) {
		once.Do(func() { close(entered) })
		<-release
		return rows(ctx, typ, subject)
	}
	s := startData(t, f, rc, secret, webhook.Config{}, data)
	<-entered
	s.cancel()
	close(release)
	<-s.done
	require.Empty(t, rc.deliveries(), "no request begun after the stop")
	require.Empty(t, f.retries(id), "no attempt counted")
	require.Equal(t, "pending", f.state(id))
	require.Contains(t, s.log.String(), webhook.LogStopped)
}

// What Run waits on a stop at most: the requests in flight (Timeout),
// then one try at settling them.
func TestStopBound(t *testing.T) {
	require.Equal(t, 20*time.Second, webhook.Config{}.StopBound(), "the defaults")
	require.Equal(t, 70*time.Second, webhook.Config{Timeout: time.Minute}.StopBound())
}

// A token in the endpoint's URL (its query, its userinfo) never reaches a
// log line or an error: they show scheme://host/path.
func TestURLTokenNeverShown(t *testing.T) {
	const token = "tok0123456789abcdefSECRET"
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	var calls atomic.Int32
	rc.setAnswer(func(w http.ResponseWriter, r *http.Request, d delivery) {
		switch calls.Add(1) {
		case 1:
			// A receiver's redirect may carry one too.
			http.Redirect(w, r, "https://u:"+token+"@elsewhere.example/in?token="+token+"#"+token, http.StatusFound)
		case 2:
			w.WriteHeader(http.StatusInternalServerError)
		case 3:
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				d.release()
				_ = conn.Close()
			}
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	u, err := url.Parse(rc.srv.URL)
	require.NoError(t, err)
	u.User = url.UserPassword("hooks", token)
	u.Path, u.RawQuery, u.Fragment = "/in", "token="+token, token
	f := newFakeOutbox()
	id := f.add("hooks", store.KindFinished, "c1", time.Now())
	s := start(t, f, rc, secret, webhook.Config{Endpoints: []webhook.Endpoint{{Name: "hooks", URL: u.String(), Secrets: []string{secret}}}})
	waitFor(t, f, "the delivery", f.empty)
	s.stop()
	rc.check()
	reasons := f.retries(id)
	require.Len(t, reasons, 3)
	require.Equal(t, `HTTP 302: a redirect to "https://elsewhere.example/in", not followed: set the endpoint's URL to where it points`, reasons[0])
	log := s.log.String()
	require.Contains(t, log, "url="+rc.srv.URL+"/in ")
	for _, text := range append(reasons, log) {
		require.NotContains(t, text, token)
	}

	// At start: an http URL off loopback is refused, naming it without
	// its token.
	_, err = webhook.Load("http://hooks:"+token+"@hooks.example.com/in?token="+token, secret, "")
	require.Error(t, err)
	require.NotContains(t, err.Error(), token)
	require.Contains(t, err.Error(), "http://hooks.example.com/in uses http")
}
