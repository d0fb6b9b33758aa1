package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/store"
)

// HAScript runs scripts/testenv.sh cmd (ha-up, ha-failover,
// ha-kill-primary, ...: the highly available PostgreSQL of its own, a
// pg_auto_failover pair) and returns its stdout. The script needs root.
func HAScript(cmd string) (stdout string, err error) {
	c := exec.Command("bash", filepath.Join(repoRoot, "scripts", "testenv.sh"), cmd)
	var out, diag bytes.Buffer
	c.Stdout, c.Stderr = &out, &diag
	// A service the script starts in the background must not keep its
	// output open; if one does, Run fails soon instead of hanging.
	c.WaitDelay = 10 * time.Second
	if err := c.Run(); err != nil {
		return out.String(), &scriptError{cmd: cmd, err: err, stderr: diag.String()}
	}
	return out.String(), nil
}

type scriptError struct {
	cmd    string
	err    error
	stderr string
}

func (e *scriptError) Error() string {
	return "scripts/testenv.sh " + e.cmd + ": " + e.err.Error() + ":\n" + e.stderr
}

// HA provisions the highly available PostgreSQL (scripts/testenv.sh ha-up,
// idempotent) and returns its URLs: readWrite lists both nodes with
// target_session_attrs=read-write (the primary, wherever it is), standby
// prefers a standby.
func HA(t testing.TB) (readWrite, standby string) {
	t.Helper()
	needServices(t)
	out, err := HAScript("ha-up")
	require.NoError(t, err)
	env := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^export (\w+)='([^']*)'$`).FindAllStringSubmatch(out, -1) {
		env[m[1]] = m[2]
	}
	readWrite, standby = env["CMDTRACK_TEST_HA_DATABASE_URL"], env["CMDTRACK_TEST_HA_STANDBY_URL"]
	require.NotEmpty(t, readWrite, "ha-up printed no CMDTRACK_TEST_HA_DATABASE_URL:\n%s", out)
	require.NotEmpty(t, standby, "ha-up printed no CMDTRACK_TEST_HA_STANDBY_URL:\n%s", out)
	return readWrite, standby
}

// HAPrimary says which of the nodes that url lists (HA's) is the primary,
// as host:port: the one that is not in recovery, asked of each node
// directly. It is an error unless exactly one is. It does not fail the test,
// so that a goroutine may call it.
func HAPrimary(ctx context.Context, url string) (string, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return "", err
	}
	nodes := append([]*pgconn.FallbackConfig{{Host: cfg.Host, Port: cfg.Port, TLSConfig: cfg.TLSConfig}}, cfg.Fallbacks...)
	var primaries, all []string
	for _, n := range nodes {
		addr := net.JoinHostPort(n.Host, strconv.Itoa(int(n.Port)))
		all = append(all, addr)
		c := cfg.Copy()
		c.Host, c.Port, c.TLSConfig = n.Host, n.Port, n.TLSConfig
		c.Fallbacks, c.ValidateConnect = nil, nil // this node, whatever it is
		c.ConnectTimeout = 5 * time.Second
		conn, err := pgx.ConnectConfig(ctx, c)
		if err != nil {
			return "", fmt.Errorf("HA node %s: %w", addr, err)
		}
		var inRecovery bool
		err = conn.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery)
		_ = conn.Close(ctx)
		if err != nil {
			return "", fmt.Errorf("HA node %s: %w", addr, err)
		}
		if !inRecovery {
			primaries = append(primaries, addr)
		}
	}
	if len(primaries) != 1 {
		return "", errors.New("HA nodes " + strings.Join(all, ", ") + ": not in recovery: [" + strings.Join(primaries, ", ") + "], want exactly one")
	}
	return primaries[0], nil
}

// SchemaAt is Schema on the database at base (say, HA's): a migrated schema
// of its own, dropped when the test ends, and base with it as search_path.
func SchemaAt(t testing.TB, base string) (st *store.Store, schema, url string) {
	t.Helper()
	st, schema, url = emptySchemaAt(t, base)
	require.NoError(t, st.Migrate(context.Background()))
	return st, schema, url
}
