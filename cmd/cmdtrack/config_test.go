package main

import (
	"bytes"
	"context"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestConfigErrorsAreOneClearLine(t *testing.T) {
	base := map[string]string{
		"CMDTRACK_DATABASE_URL": "postgres://u:hunter2@db/x",
		"CMDTRACK_AMQP_URL":     "amqps://iot.example:5671",
	}
	for _, c := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"missing database", map[string]string{"CMDTRACK_DATABASE_URL": ""}, "CMDTRACK_DATABASE_URL"},
		{"bad int", map[string]string{"CMDTRACK_BATCH_SIZE": "many"}, "CMDTRACK_BATCH_SIZE"},
		{"out of range", map[string]string{"CMDTRACK_AMQP_CREDIT": "1"}, "CMDTRACK_AMQP_CREDIT"},
		{"bad duration", map[string]string{"CMDTRACK_BATCH_WAIT": "soon"}, "CMDTRACK_BATCH_WAIT"},
		{"bad log level", map[string]string{"CMDTRACK_LOG_LEVEL": "loud"}, "CMDTRACK_LOG_LEVEL"},
		{"access key alone", map[string]string{"CMDTRACK_AMQP_ACCESS_KEY": "AK"}, "CMDTRACK_AMQP_ACCESS_CODE"},
		{"too many queues", map[string]string{"CMDTRACK_AMQP_QUEUE": "a,b,c,d,e,f,g,h,i,j,k"}, "CMDTRACK_AMQP_QUEUE"},
		{"bad age", map[string]string{"CMDTRACK_RETENTION_HISTORY": "-3d"}, "CMDTRACK_RETENTION_HISTORY"},
		{"reconcile without API", map[string]string{"CMDTRACK_RECONCILE_INTERVAL": "10m"}, "CMDTRACK_API_ENDPOINT is required by CMDTRACK_RECONCILE_INTERVAL"},
		{"reconcile too often", map[string]string{"CMDTRACK_RECONCILE_INTERVAL": "10ms"}, "CMDTRACK_RECONCILE_INTERVAL must be 0 (off) or at least 1s"},
		{"reconcile rate", map[string]string{"CMDTRACK_RECONCILE_RATE": "0"}, "CMDTRACK_RECONCILE_RATE"},
		{"API CA file missing", map[string]string{"CMDTRACK_API_CA_FILE": "/nonexistent/ca.pem"}, "CMDTRACK_API_CA_FILE"},
		{"command retention shorter than the rollup", map[string]string{"CMDTRACK_RETENTION_COMMANDS": "2d"},
			"CMDTRACK_RETENTION_COMMANDS (48h0m0s) is shorter than CMDTRACK_ROLLUP_DAYS (3 days)"},
		{"command retention shorter than more rollup days", map[string]string{"CMDTRACK_RETENTION_COMMANDS": "7d", "CMDTRACK_ROLLUP_DAYS": "8"},
			"CMDTRACK_RETENTION_COMMANDS (168h0m0s) is shorter than CMDTRACK_ROLLUP_DAYS (8 days)"},
		{"short push token", map[string]string{"CMDTRACK_HTTP_ADDR": "127.0.0.1:0", "CMDTRACK_HTTP_TOKEN": "hunter2"},
			"CMDTRACK_HTTP_TOKEN is shorter than 16 characters"},
		{"fewer connections than pushes in flight", map[string]string{"CMDTRACK_HTTP_MAX_CONNS": "100"},
			"CMDTRACK_HTTP_MAX_CONNS (100) is below CMDTRACK_HTTP_MAX_IN_FLIGHT (256)"},
		{"fewer connections than more pushes in flight", map[string]string{"CMDTRACK_HTTP_MAX_CONNS": "512", "CMDTRACK_HTTP_MAX_IN_FLIGHT": "1000"},
			"CMDTRACK_HTTP_MAX_CONNS (512) is below CMDTRACK_HTTP_MAX_IN_FLIGHT (1000)"},
		{"wait as long as the platform", map[string]string{"CMDTRACK_HTTP_WAIT": "15s"},
			"CMDTRACK_HTTP_WAIT (15s) is not under IoTDA's 15 s push timeout"},
		{"wait longer than the platform", map[string]string{"CMDTRACK_HTTP_WAIT": "1m"},
			"CMDTRACK_HTTP_WAIT (1m0s) is not under IoTDA's 15 s push timeout"},
		{"webhook over plain HTTP", map[string]string{"CMDTRACK_WEBHOOK_URL": "http://billing.example/hooks",
			"CMDTRACK_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "CMDTRACK_WEBHOOK_URL"},
		{"webhook without a secret", map[string]string{"CMDTRACK_WEBHOOK_URL": "https://billing.example/hooks"}, "CMDTRACK_WEBHOOK_SECRET"},
		{"webhook secret not whsec", map[string]string{"CMDTRACK_WEBHOOK_URL": "https://billing.example/hooks",
			"CMDTRACK_WEBHOOK_SECRET": "hunter2hunter2hunter2"}, "CMDTRACK_WEBHOOK_SECRET"},
		{"webhooks file missing", map[string]string{"CMDTRACK_WEBHOOKS_FILE": "/nonexistent/hooks.json"}, "CMDTRACK_WEBHOOKS_FILE"},
		{"webhook workers", map[string]string{"CMDTRACK_WEBHOOK_URL": "https://billing.example/hooks",
			"CMDTRACK_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "CMDTRACK_WEBHOOK_WORKERS": "0"}, "CMDTRACK_WEBHOOK_WORKERS"},
		{"webhook timeout past the stop grace", map[string]string{"CMDTRACK_WEBHOOK_URL": "https://billing.example/hooks",
			"CMDTRACK_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "CMDTRACK_WEBHOOK_TIMEOUT": "1m"},
			"CMDTRACK_WEBHOOK_TIMEOUT (1m0s) lets a stop take up to 1m10s (the requests in flight, then settling them), past CMDTRACK_SHUTDOWN_GRACE (20s): lower the timeout, or raise the grace to at least 1m10s"},
		{"stop grace shorter than the webhook timeout", map[string]string{"CMDTRACK_WEBHOOK_URL": "https://billing.example/hooks",
			"CMDTRACK_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "CMDTRACK_SHUTDOWN_GRACE": "15s"},
			"CMDTRACK_WEBHOOK_TIMEOUT (10s) lets a stop take up to 20s"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range base {
				t.Setenv(k, v)
			}
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			var out bytes.Buffer
			code := mainStatus(nil, &out, &out)
			require.Equal(t, 2, code)
			require.Contains(t, out.String(), c.want)
			require.Equal(t, 1, strings.Count(out.String(), "\n"), "one line: %q", out.String())
			require.NotContains(t, out.String(), "hunter2")
		})
	}
}

// The webhook defaults fit the stop grace's default; a longer timeout
// fits a longer grace.
func TestWebhookTimeoutWithinGrace(t *testing.T) {
	t.Setenv("CMDTRACK_DATABASE_URL", "postgres://db/x")
	t.Setenv("CMDTRACK_AMQP_URL", "amqp://localhost")
	t.Setenv("CMDTRACK_WEBHOOK_URL", "https://billing.example/hooks")
	t.Setenv("CMDTRACK_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	_, err := loadConfig("run")
	require.NoError(t, err)
	t.Setenv("CMDTRACK_WEBHOOK_TIMEOUT", "30s")
	t.Setenv("CMDTRACK_SHUTDOWN_GRACE", "40s")
	_, err = loadConfig("run")
	require.NoError(t, err)
}

func TestConfigDefaultsAndAges(t *testing.T) {
	t.Setenv("CMDTRACK_DATABASE_URL", "postgres://db/x")
	t.Setenv("CMDTRACK_AMQP_URL", "amqp://localhost")
	t.Setenv("CMDTRACK_AMQP_QUEUE", "/queue/a,/queue/b")
	t.Setenv("CMDTRACK_RETENTION_HISTORY", "90d")
	t.Setenv("CMDTRACK_RETENTION_DEAD_LETTERS", "36h")
	c, err := loadConfig("run")
	require.NoError(t, err)
	require.Equal(t, []string{"/queue/a", "/queue/b"}, c.AMQPQueue)
	require.Equal(t, Age(90*24*time.Hour), c.RetentionHistory)
	require.Equal(t, Age(36*time.Hour), c.RetentionDeadLetters)
	require.Equal(t, 1024, c.AMQPCredit)
	require.Equal(t, "127.0.0.1:9464", c.OpsAddr, "ops server on loopback unless told otherwise")
	require.Zero(t, c.ReconcileInterval, "reconciling is off unless asked for")
	require.Equal(t, time.Hour, c.ReconcileThreshold)
	require.InDelta(t, 5.0, c.ReconcileRate, 0)
}

// Every setting has a line in `cmdtrack -h`.
func TestUsageListsEveryVariable(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	require.Equal(t, 0, mainStatus([]string{"-h"}, &out, &out))
	typ := reflect.TypeOf(Config{})
	for i := range typ.NumField() {
		require.Contains(t, out.String(), "CMDTRACK_", typ.Field(i).Name)
	}
	require.Equal(t, typ.NumField(), strings.Count(out.String(), "  CMDTRACK_"))
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	require.Equal(t, 2, mainStatus([]string{"frobnicate"}, &out, &out))
	require.Contains(t, out.String(), `unknown command "frobnicate"`)
	out.Reset()
	require.Equal(t, 0, mainStatus([]string{"version"}, &out, &out))
	require.True(t, strings.HasPrefix(out.String(), "cmdtrack "))
}

// mainStatus runs cmdtrack as main does and returns its exit status. A
// configuration that should have been refused but started a daemon is
// stopped after a generous while (a refusal is immediate), so that the test
// fails on its status rather than hanging.
func mainStatus(args []string, stdout, stderr *bytes.Buffer) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return exitStatus(run(ctx, args, stdout, stderr), stderr)
}

// "q1, q2" is what people type: queue names are trimmed, then checked.
func TestQueueNamesTrimmedAndChecked(t *testing.T) {
	t.Setenv("CMDTRACK_DATABASE_URL", "postgres://db/x")
	t.Setenv("CMDTRACK_AMQP_URL", "amqp://localhost")
	t.Setenv("CMDTRACK_AMQP_QUEUE", "DefaultQueue, Other ")
	c, err := loadConfig("run")
	require.NoError(t, err)
	require.Equal(t, []string{"DefaultQueue", "Other"}, c.AMQPQueue)
	for _, bad := range []string{"a,,b", "a,a", "a\tb"} {
		t.Setenv("CMDTRACK_AMQP_QUEUE", bad)
		_, err := loadConfig("run")
		require.ErrorContains(t, err, "CMDTRACK_AMQP_QUEUE", bad)
	}
}

// A push receiver open to anyone needs explicit consent; the refusal is one
// line naming the settings, exit status 2.
func TestUnauthenticatedPushNeedsConsent(t *testing.T) {
	t.Setenv("CMDTRACK_DATABASE_URL", "postgres://u:hunter2@db/x")
	t.Setenv("CMDTRACK_AMQP_URL", "amqp://localhost")
	t.Setenv("CMDTRACK_HTTP_ADDR", "127.0.0.1:0")
	var out bytes.Buffer
	require.Equal(t, 2, mainStatus(nil, &out, &out))
	for _, name := range []string{"CMDTRACK_HTTP_TOKEN", "CMDTRACK_HTTP_CLIENT_CA", "CMDTRACK_HTTP_ALLOW_UNAUTHENTICATED"} {
		require.Contains(t, out.String(), name)
	}
	require.Equal(t, 1, strings.Count(out.String(), "\n"), "one line: %q", out.String())
	t.Setenv("CMDTRACK_HTTP_ALLOW_UNAUTHENTICATED", "true")
	_, err := loadConfig("run")
	require.NoError(t, err)
}

// An address in use is a runtime failure (exit 1, which systemd retries);
// only configuration errors are exit status 2.
func TestBindFailureIsARuntimeError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	t.Setenv("CMDTRACK_DATABASE_URL", "postgres://db/x")
	t.Setenv("CMDTRACK_AMQP_URL", "amqp://127.0.0.1:1")
	t.Setenv("CMDTRACK_MIGRATE_ON_START", "false")
	t.Setenv("CMDTRACK_OPS_ADDR", ln.Addr().String())
	var out bytes.Buffer
	require.Equal(t, 1, mainStatus(nil, &out, &out), out.String())
	require.Contains(t, out.String(), "CMDTRACK_OPS_ADDR")
	t.Setenv("CMDTRACK_OPS_ADDR", "no-port-here")
	out.Reset()
	require.Equal(t, 2, mainStatus(nil, &out, &out), out.String())
}

// `cmdtrack send -h` prints send's usage; it needs no configuration.
func TestSendHelp(t *testing.T) {
	t.Setenv("CMDTRACK_DATABASE_URL", "")
	var out, errOut bytes.Buffer
	require.Equal(t, 0, mainStatus([]string{"send", "-h"}, &out, &errOut), errOut.String())
	require.Contains(t, out.String(), "Usage: cmdtrack send")
	require.Contains(t, out.String(), "-device")
}

// IoTDA's push client gives up on an answer after 15 s: a push must get its
// 503 (the database is away) before that, or the platform sees a timeout
// instead, however long the request then waits.
func TestHTTPWaitFitsThePlatform(t *testing.T) {
	t.Setenv("CMDTRACK_DATABASE_URL", "postgres://db/x")
	t.Setenv("CMDTRACK_AMQP_URL", "amqp://localhost")
	c, err := loadConfig("run")
	require.NoError(t, err)
	const platformGivesUp = 15 * time.Second
	// Reading the body and writing the answer take time too.
	require.LessOrEqual(t, c.HTTPWait, platformGivesUp*2/3, "CMDTRACK_HTTP_WAIT's default")
	// And a value set is refused unless under it (TestConfigErrorsAreOneClearLine
	// has the message).
	t.Setenv("CMDTRACK_HTTP_WAIT", platformGivesUp.String())
	_, err = loadConfig("run")
	require.ErrorContains(t, err, "CMDTRACK_HTTP_WAIT")
	t.Setenv("CMDTRACK_HTTP_WAIT", (platformGivesUp - time.Second).String())
	_, err = loadConfig("run")
	require.NoError(t, err)
}

// A console token short enough to guess is refused like the push's, in one
// line that does not repeat it.
func TestShortConsoleTokenRefused(t *testing.T) {
	t.Setenv("CMDTRACK_DATABASE_URL", "postgres://db/x")
	t.Setenv("CMDTRACK_CONSOLE_TOKEN", "hunter2")
	var out bytes.Buffer
	require.Equal(t, 2, mainStatus([]string{"console"}, &out, &out))
	require.Contains(t, out.String(), "CMDTRACK_CONSOLE_TOKEN is shorter than 16 characters")
	require.Equal(t, 1, strings.Count(out.String(), "\n"), "one line: %q", out.String())
	require.NotContains(t, out.String(), "hunter2")
	t.Setenv("CMDTRACK_CONSOLE_TOKEN", strings.Repeat("k", 16))
	_, err := loadConfig("console")
	require.NoError(t, err)
}
