package webhook_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/store"
	"github.com/cmdtrack/cmdtrack/webhook"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "webhooks.json")
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func TestLoad(t *testing.T) {
	s1, s2 := newSecret(t), newSecret(t)
	eps, err := webhook.Load("", "", "")
	require.NoError(t, err)
	require.Empty(t, eps)

	eps, err = webhook.Load("https://hooks.example.com/in", " "+s1+"  "+s2+" ", "")
	require.NoError(t, err)
	require.Len(t, eps, 1)
	require.Equal(t, "default", eps[0].Name)
	require.Equal(t, []string{s1, s2}, eps[0].Secrets, "several secrets, space-separated")

	file := writeFile(t, `[
		{"name": "billing", "url": "https://billing.example.com/hook", "secrets": ["`+s1+`"],
		 "types": ["command.finished", "call.finished"], "products": ["meter"]},
		{"name": "local", "url": "http://127.0.0.1:8080/hook", "secrets": ["`+s2+`"]},
		{"name": "v6", "url": "http://[::1]:8080/hook", "secrets": ["`+s2+`"]},
		{"name": "named", "url": "http://localhost/hook", "secrets": ["`+s2+`"]}
	]`)
	eps, err = webhook.Load("https://hooks.example.com/in", s1, file)
	require.NoError(t, err)
	require.Len(t, eps, 5)
	require.Equal(t, []store.WebhookRoute{
		{Endpoint: "default", Types: nil, Products: nil},
		{Endpoint: "billing", Types: []string{"command.finished", "call.finished"}, Products: []string{"meter"}},
		{Endpoint: "local"}, {Endpoint: "v6"}, {Endpoint: "named"},
	}, webhook.Routes(eps))
}

// Each bad setting is refused with one line that names the setting and
// what to do, and never repeats a secret.
func TestLoadRefuses(t *testing.T) {
	good := newSecret(t)
	short := "whsec_c2hvcnQ=" // "short"
	for _, tc := range []struct {
		name              string
		url, secret, file string
		want              string
	}{
		{name: "secret without URL", secret: good,
			want: "CMDTRACK_WEBHOOK_SECRET is set without CMDTRACK_WEBHOOK_URL: set the URL too, or unset the secret"},
		{name: "URL without secret", url: "https://h.example.com/",
			want: "CMDTRACK_WEBHOOK_SECRET is required with CMDTRACK_WEBHOOK_URL (make one with: echo whsec_$(openssl rand -base64 32))"},
		{name: "http not loopback", url: "http://h.example.com/in", secret: good,
			want: "CMDTRACK_WEBHOOK_URL: http://h.example.com/in uses http to a host that is not loopback: use https (http is for 127.0.0.1, ::1 and localhost only)"},
		{name: "http to a name that looks loopback", url: "http://127.0.0.1.example.com/", secret: good,
			want: "uses http to a host that is not loopback"},
		{name: "userinfo and query left out", url: "http://u:hunter2@h.example.com/in?token=hunter2", secret: good,
			want: "CMDTRACK_WEBHOOK_URL: http://h.example.com/in uses http"},
		{name: "other scheme", url: "ftp://h.example.com/", secret: good,
			want: `CMDTRACK_WEBHOOK_URL: the URL's scheme is "ftp": use https`},
		{name: "not absolute", url: "h.example.com/in", secret: good,
			want: "CMDTRACK_WEBHOOK_URL: the URL is not an absolute http(s) URL: give https://host/path"},
		{name: "secret without prefix", url: "https://h.example.com/", secret: strings.TrimPrefix(good, "whsec_"),
			want: `CMDTRACK_WEBHOOK_SECRET: secret 1: does not start with "whsec_" (make one with`},
		{name: "secret not base64", url: "https://h.example.com/", secret: good + " whsec_%%%",
			want: `CMDTRACK_WEBHOOK_SECRET: secret 2: is not "whsec_" and standard base64`},
		{name: "secret too short", url: "https://h.example.com/", secret: short,
			want: "CMDTRACK_WEBHOOK_SECRET: secret 1: is 5 bytes: use at least 16 random bytes"},
		{name: "file missing", file: "/nonexistent/webhooks.json",
			want: "CMDTRACK_WEBHOOKS_FILE: open /nonexistent/webhooks.json: no such file or directory"},
		{name: "file not JSON", file: writeFile(t, `{"name": "x"}`),
			want: `is not a JSON list of {"name", "url", "secrets", "types", "products"}`},
		{name: "file unknown key", file: writeFile(t, `[{"name": "x", "url": "https://h.example.com/", "secrets": ["`+good+`"], "product": ["p"]}]`),
			want: `json: unknown field "product"`},
		{name: "file two values", file: writeFile(t, `[] []`),
			want: "has more than one JSON value: give one list"},
		{name: "unknown type", file: writeFile(t, `[{"name": "x", "url": "https://h.example.com/", "secrets": ["`+good+`"], "types": ["command.stuck"]}]`),
			want: `CMDTRACK_WEBHOOKS_FILE: endpoint "x": unknown type "command.stuck": use command.finished, command.final_changed, message.finished, message.final_changed, call.finished (or none for all)`},
		{name: "no secret in file", file: writeFile(t, `[{"name": "x", "url": "https://h.example.com/"}]`),
			want: `CMDTRACK_WEBHOOKS_FILE: endpoint "x": no secret: give "secrets" at least one`},
		{name: "bad secret in file", file: writeFile(t, `[{"name": "x", "url": "https://h.example.com/", "secrets": ["`+short+`"]}]`),
			want: `CMDTRACK_WEBHOOKS_FILE: endpoint "x": secret 1: is 5 bytes`},
		{name: "no name", file: writeFile(t, `[{"url": "https://h.example.com/", "secrets": ["`+good+`"]}]`),
			want: `CMDTRACK_WEBHOOKS_FILE: endpoint "": no name: give "name"`},
		{name: "long name", file: writeFile(t, `[{"name": "`+strings.Repeat("n", 65)+`", "url": "https://h.example.com/", "secrets": ["`+good+`"]}]`),
			want: "the name is 65 bytes: make it at most 64"},
		{name: "name characters", file: writeFile(t, `[{"name": "a b", "url": "https://h.example.com/", "secrets": ["`+good+`"]}]`),
			want: `endpoint "a b": the name may hold only letters, digits, '.', '_' and '-'`},
		{name: "name twice", url: "https://h.example.com/", secret: good,
			file: writeFile(t, `[{"name": "default", "url": "https://h.example.com/", "secrets": ["`+good+`"]}]`),
			want: `CMDTRACK_WEBHOOKS_FILE: endpoint "default": the name is used twice: give each endpoint its own`},
		{name: "empty product", file: writeFile(t, `[{"name": "x", "url": "https://h.example.com/", "secrets": ["`+good+`"], "products": [""]}]`),
			want: `endpoint "x": an empty product id: list product ids, or none for all`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eps, err := webhook.Load(tc.url, tc.secret, tc.file)
			require.Error(t, err)
			require.Nil(t, eps)
			msg := err.Error()
			require.Contains(t, msg, tc.want)
			require.NotContains(t, msg, "\n")
			require.NotContains(t, msg, strings.TrimPrefix(good, "whsec_"))
			require.NotContains(t, msg, "hunter2")
		})
	}
}

func TestConfigCheck(t *testing.T) {
	ok := webhook.Config{Timeout: 10e9, RetryFor: 24 * 3600e9, BackoffMin: 5e9, BackoffMax: 3600e9, Workers: 4}
	require.NoError(t, ok.Check())
	bad := webhook.Config{BackoffMin: 2, BackoffMax: 1}
	require.EqualError(t, bad.Check(), "CMDTRACK_WEBHOOK_TIMEOUT must be above 0 and at most 5m; "+
		"CMDTRACK_WEBHOOK_RETRY_FOR must be at least 1m; "+
		"CMDTRACK_WEBHOOK_BACKOFF_MAX must be at least CMDTRACK_WEBHOOK_BACKOFF_MIN; "+
		"CMDTRACK_WEBHOOK_WORKERS must be between 1 and 256")
}
