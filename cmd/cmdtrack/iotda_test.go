package main_test

import (
	"log/slog"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/consumer"
	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
)

// iotdaEnv points the worker at the IoTDA-shaped endpoint, as a user
// configures cmdtrack for IoTDA.
func iotdaEnv(e *testenv.IoTDAEndpoint) []string {
	return []string{
		"CMDTRACK_AMQP_URL", e.URL,
		"CMDTRACK_AMQP_CA_FILE", e.CAFile,
		"CMDTRACK_AMQP_ACCESS_KEY", e.AccessKey,
		"CMDTRACK_AMQP_ACCESS_CODE", e.AccessCode,
		"CMDTRACK_AMQP_INSTANCE_ID", e.InstanceID,
	}
}

// requireIoTDAUsernames requires every login to carry the endpoint's
// credentials in IoTDA's username shape, with a timestamp taken when it
// dialled.
func requireIoTDAUsernames(t *testing.T, e *testenv.IoTDAEndpoint, logins []testenv.AuthCheck) {
	t.Helper()
	require.NotEmpty(t, logins, "the worker never logged in with IoTDA credentials")
	shape := regexp.MustCompile(`^accessKey=` + regexp.QuoteMeta(e.AccessKey) + `\|timestamp=[0-9]{13}\|instanceId=` +
		regexp.QuoteMeta(e.InstanceID) + `$`)
	for _, l := range logins {
		require.Regexp(t, shape, l.Username)
		require.WithinDuration(t, l.At, l.Timestamp, 30*time.Second, "the timestamp is not the time of the dial")
	}
}

// requireOnlyLine says that msg is the one line the worker logged at warn
// level or above, once.
func requireOnlyLine(t *testing.T, w *testenv.Worker, msg string) {
	t.Helper()
	var msgs []any
	for _, r := range w.LogsAtLeast(slog.LevelWarn) {
		msgs = append(msgs, r["msg"])
	}
	require.Equal(t, []any{msg}, msgs)
}

// TestIoTDAEndpoint consumes the way a real user's cmdtrack does: amqps to a
// host name whose certificate verifies only against the CA file, IoTDA's
// SASL username and access code, Open hostname "default" (the endpoint
// serves it as vhost /), while the platform side publishes into the queue.
func TestIoTDAEndpoint(t *testing.T) {
	t.Parallel()
	f := setup(t)
	iot := testenv.IoTDA(t)
	s := simulate.Generate(simulate.Config{Commands: 400, Seed: 71, OutOfOrder: 1, Duplicate: 0.1, Poison: 0.02, Foreign: 0.02})
	f.pub.SendAll(t, bodies(s.Messages))

	w := testenv.StartWorker(t, f.env(iotdaEnv(iot)...))
	w.WaitReady(30 * time.Second)
	f.waitStored(t, s, time.Minute)
	require.Equal(t, float64(1), metric(t, w, "cmdtrack_broker_connected"))
	require.Zero(t, metric(t, w, "cmdtrack_broker_reconnects_total"), "connected once, never lost")
	stopCleanly(t, w)
	require.Empty(t, w.LogsAtLeast(slog.LevelError))
	require.NotContains(t, w.Output(), iot.AccessCode)
	f.verify(t, s)

	logins := iot.Logins()
	requireIoTDAUsernames(t, iot, logins)
	require.Len(t, logins, 1, "one connection, one login")
	require.True(t, logins[0].Allowed, "login refused: %s", logins[0].Reason)
	var recheck, vhost bool
	for _, c := range iot.Checks() {
		recheck = recheck || (c.Path == "user" && !c.Password && c.Allowed)
		vhost = vhost || (c.Path == "vhost" && c.Detail == "/" && c.Allowed)
	}
	require.True(t, recheck, "the broker never re-checked the user when the session began: %+v", iot.Checks())
	require.True(t, vhost, "the session never got vhost / (Open hostname \"default\"): %+v", iot.Checks())
}

// Without the CA file the endpoint's certificate cannot be verified: one
// clear line about the certificate (what to set), never connected, not
// ready; verification is never skipped.
func TestIoTDAUntrustedCertificate(t *testing.T) {
	t.Parallel()
	f := setup(t)
	iot := testenv.IoTDA(t)
	w := testenv.StartWorker(t, f.env(append(iotdaEnv(iot), "CMDTRACK_AMQP_CA_FILE", "")...))
	require.Eventually(t, func() bool { return w.LogCount(consumer.LogBadCertificate) == 1 }, 20*time.Second, 20*time.Millisecond)
	// Several re-dials, each refused.
	require.Eventually(t, func() bool { return metricSum(t, w, "cmdtrack_broker_reconnects_total") >= 3 }, 30*time.Second, 20*time.Millisecond)
	code, body := w.Get("/readyz")
	require.Equal(t, 503, code)
	require.Contains(t, body, "not connected to the broker")
	requireOnlyLine(t, w, consumer.LogBadCertificate) // one per outage, not per attempt, and not "connection lost"
	require.Zero(t, metric(t, w, "cmdtrack_broker_connected"))
	require.Empty(t, iot.Logins(), "no credentials were sent to an unverified peer")
	stopCleanly(t, w)
}

// A wrong access code: one clear line that names the credential variables
// (a refusal is not "connection lost"), re-dials with backoff, and no secret
// in any line.
func TestIoTDAWrongAccessCode(t *testing.T) {
	t.Parallel()
	f := setup(t)
	iot := testenv.IoTDA(t)
	wrong := "wrong-" + iot.AccessCode
	// RabbitMQ answers a refused login after 3 s on purpose; on a busy machine
	// the answer came after the default 8 s idle timeout, which is a
	// "cannot connect" line, not the refusal this test is about.
	w := testenv.StartWorker(t, f.env(append(iotdaEnv(iot), "CMDTRACK_AMQP_ACCESS_CODE", wrong,
		"CMDTRACK_AMQP_RECONNECT_MIN", "200ms", "CMDTRACK_AMQP_RECONNECT_MAX", "2s",
		"CMDTRACK_AMQP_IDLE_TIMEOUT", "1m", "CMDTRACK_AMQP_DIAL_TIMEOUT", "1m")...))
	require.Eventually(t, func() bool { return w.LogCount(consumer.LogAuthRefused) == 1 }, 20*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return len(iot.Logins()) >= 3 }, 30*time.Second, 20*time.Millisecond, "it keeps trying")
	requireOnlyLine(t, w, consumer.LogAuthRefused) // one per outage, not per attempt, and not "connection lost"
	var named bool
	for _, r := range w.Logs() {
		if r["msg"] == consumer.LogAuthRefused {
			check, _ := r["check"].(string)
			named = regexp.MustCompile(`CMDTRACK_AMQP_ACCESS_CODE`).MatchString(check)
		}
	}
	require.True(t, named, "the line names CMDTRACK_AMQP_ACCESS_CODE")
	require.Zero(t, metric(t, w, "cmdtrack_broker_connected"))
	logins := iot.Logins()
	requireIoTDAUsernames(t, iot, logins)
	require.GreaterOrEqual(t, len(logins), 2, "it keeps trying")
	require.LessOrEqual(t, len(logins), 10, "with backoff, not a spin")
	for _, l := range logins {
		require.False(t, l.Allowed)
	}
	code, _ := w.Get("/readyz")
	require.Equal(t, 503, code)
	stopCleanly(t, w)
	require.NotContains(t, w.Output(), wrong, "the access code is never logged")
}
