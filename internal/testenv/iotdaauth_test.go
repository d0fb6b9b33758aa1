package testenv

import (
	"fmt"
	"io"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestIoTDAAuthRule checks the auth service's answers to
// rabbitmq_auth_backend_http as RabbitMQ asks them, without RabbitMQ.
func TestIoTDAAuthRule(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(1_790_000_000_000)
	clock := now
	a := newIoTDAAuth(func() time.Time { return clock })
	a.register("ak1", "code1", "inst1")
	user := func(ts time.Time) string {
		return fmt.Sprintf("accessKey=ak1|timestamp=%d|instanceId=inst1", ts.UnixMilli())
	}
	ask := func(path string, params ...string) string {
		t.Helper()
		q := url.Values{}
		for i := 0; i+1 < len(params); i += 2 {
			q.Add(params[i], params[i+1])
		}
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, httptest.NewRequest("GET", "/auth/"+path+"?"+q.Encode(), nil))
		require.Equal(t, 200, rec.Code, "RabbitMQ takes any other status for an error, not a refusal")
		b, _ := io.ReadAll(rec.Body)
		return string(b)
	}

	good := user(now.Add(-4 * time.Minute))
	require.Equal(t, "deny", ask("user", "username", good), "no login yet: the password-less check fails")
	require.Equal(t, "deny", ask("user", "username", good, "password", "wrong"))
	require.Equal(t, "deny", ask("user", "username", user(now.Add(-6*time.Minute)), "password", "code1"), "stale timestamp")
	require.Equal(t, "deny", ask("user", "username", user(now.Add(6*time.Minute)), "password", "code1"), "timestamp ahead")
	require.Equal(t, "deny", ask("user", "username", "accessKey=ak1|timestamp=179000000000|instanceId=inst1", "password", "code1"), "12 digits")
	require.Equal(t, "deny", ask("user", "username", "accessKey=ak1|timestamp=1790000000000|instanceId=other", "password", "code1"))
	require.Equal(t, "deny", ask("user", "username", "accessKey=ak2|timestamp=1790000000000|instanceId=inst1", "password", "code1"))
	require.Equal(t, "deny", ask("user", "username", "guest", "password", "guest"))
	require.Equal(t, "deny", ask("vhost", "username", good, "vhost", "/"), "not logged in")

	require.Equal(t, "allow", ask("user", "username", good, "password", "code1"))
	require.Equal(t, "allow", ask("user", "username", good), "the AMQP 1.0 plugin's re-check when a session begins")
	require.Equal(t, "allow", ask("vhost", "username", good, "vhost", "/", "ip", "127.0.0.1"))
	require.Equal(t, "deny", ask("vhost", "username", good, "vhost", "default"))
	require.Equal(t, "allow", ask("resource", "username", good, "vhost", "/", "resource", "queue", "name", "q", "permission", "configure"))
	require.Equal(t, "allow", ask("resource", "username", good, "vhost", "/", "resource", "queue", "name", "q", "permission", "read"))
	require.Equal(t, "deny", ask("resource", "username", good, "vhost", "/", "resource", "exchange", "name", "amq.default", "permission", "write"))
	require.Equal(t, "deny", ask("topic", "username", good, "vhost", "/", "resource", "topic", "name", "amq.topic", "permission", "write"))

	clock = now.Add(2 * time.Minute)
	require.Equal(t, "deny", ask("user", "username", good), "the re-check follows a login closely")

	logins := 0
	for _, c := range a.checks("ak1") {
		if c.Path == "user" && c.Password {
			logins++
		}
	}
	require.Equal(t, 6, logins, "every login with a password is recorded, refused or not")
	a.unregister("ak1")
	require.Empty(t, a.checks("ak1"))
	require.Equal(t, "deny", ask("user", "username", good, "password", "code1"), "withdrawn with the test")
}
