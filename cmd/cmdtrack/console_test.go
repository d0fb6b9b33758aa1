package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A console on an address beyond loopback without authentication is
// refused before anything starts: exit 2, one line naming the settings.
func TestConsoleRefusesUnauthenticatedNetworkAddress(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"CMDTRACK_CONSOLE_ADDR": ":9465"}, "CMDTRACK_CONSOLE_ALLOW_UNAUTHENTICATED=true"},
		{map[string]string{"CMDTRACK_CONSOLE_ADDR": "0.0.0.0:9465", "CMDTRACK_CONSOLE_USER": "support"}, "CMDTRACK_CONSOLE_USER and CMDTRACK_CONSOLE_PASSWORD go together"},
		{map[string]string{"CMDTRACK_CONSOLE_ADDR": "0.0.0.0:9465", "CMDTRACK_CONSOLE_CLIENT_CA": "ca.pem"}, "CMDTRACK_CONSOLE_CLIENT_CA needs CMDTRACK_CONSOLE_TLS_CERT"},
	} {
		t.Run(c.want, func(t *testing.T) {
			t.Setenv("CMDTRACK_DATABASE_URL", "postgres://u:hunter2@db/x")
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			var out bytes.Buffer
			require.Equal(t, 2, mainStatus([]string{"console"}, &out, &out))
			require.Contains(t, out.String(), c.want)
			require.Contains(t, out.String(), "CMDTRACK_CONSOLE_")
			require.Equal(t, 1, strings.Count(out.String(), "\n"), "one line: %q", out.String())
		})
	}
}
