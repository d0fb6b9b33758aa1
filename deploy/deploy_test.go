// Package deploy_test checks the deployment artefacts offline: the Dockerfile
// and .dockerignore, docker-compose.yml, the systemd units, the Kubernetes
// manifests, the Grafana dashboard and the alerting rules, against each
// other and against the code (the CMDTRACK_* variables `cmdtrack -h` prints,
// the metrics the code registers).
//
// It is a module of its own so that Kubernetes', Compose's and Moby's
// packages stay out of the service's go.mod (and its Docker build).
package deploy_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/testenv"
)

// repoRoot is the module root, seen from this package's directory.
const repoRoot = ".."

const (
	nonRootUID  = 65532
	opsPort     = 9464
	imageName   = "cmdtrack"
	placeholder = "CHANGE_ME"
)

var tmpDir string

func TestMain(m *testing.M) {
	var err error
	tmpDir, err = os.MkdirTemp("", "cmdtrack-deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(tmpDir)
	os.Exit(code)
}

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, rel))
	require.NoError(t, err)
	return b
}

// ---------------------------------------------------------------------------
// The configuration variables, as the real binary prints them.

type envVar struct {
	Required bool
	Default  string
}

// simPublishFlags are the flags `iotda-sim publish -h` lists.
func simPublishFlags(t *testing.T) (map[string]bool, error) {
	bin := testenv.Build(t, "cmd/iotda-sim")
	out, err := exec.Command(bin, "publish", "-h").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("iotda-sim publish -h: %w\n%s", err, out)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z][a-z0-9-]*)\b`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if len(flags) < 3 {
		return nil, fmt.Errorf("no flags found in iotda-sim publish -h:\n%s", out)
	}
	return flags, nil
}

// knownVars parses the table `cmdtrack -h` prints (tabwriter columns under
// the VARIABLE, DEFAULT and DESCRIPTION headings).
func knownVars(t *testing.T) (map[string]envVar, error) {
	bin := testenv.Build(t, "cmd/cmdtrack")
	out, err := exec.Command(bin, "-h").Output()
	if err != nil {
		return nil, fmt.Errorf("cmdtrack -h: %w", err)
	}
	vars := map[string]envVar{}
	defCol, descCol := -1, -1
	for line := range strings.Lines(string(out)) {
		line = strings.TrimRight(line, "\n")
		if strings.Contains(line, "VARIABLE") && strings.Contains(line, "DESCRIPTION") {
			defCol, descCol = strings.Index(line, "DEFAULT"), strings.Index(line, "DESCRIPTION")
			continue
		}
		name, _, ok := strings.Cut(strings.TrimSpace(line), " ")
		if defCol < 0 || !ok || !strings.HasPrefix(name, "CMDTRACK_") || len(line) < descCol {
			continue
		}
		vars[name] = envVar{
			Required: strings.Contains(line[:defCol], "(required)"),
			Default:  strings.TrimSpace(line[defCol:descCol]),
		}
	}
	if len(vars) < 10 || defCol < 0 {
		return nil, fmt.Errorf("could not parse the variables in cmdtrack -h:\n%s", out)
	}
	return vars, nil
}

func vars(t *testing.T) map[string]envVar {
	t.Helper()
	v, err := knownVars(t)
	require.NoError(t, err)
	return v
}

// requireKnownVars checks that every CMDTRACK_* name is one cmdtrack reads.
func requireKnownVars(t *testing.T, where string, names []string) {
	t.Helper()
	known := vars(t)
	for _, n := range names {
		if strings.HasPrefix(n, "CMDTRACK_") {
			_, ok := known[n]
			require.Truef(t, ok, "%s sets %s, which `cmdtrack -h` does not list", where, n)
		}
	}
}

// requireCompleteConfig checks that env has every required variable and is
// consistent the way cmd/cmdtrack's Config.validate demands.
func requireCompleteConfig(t *testing.T, where string, env map[string]string) {
	t.Helper()
	for name, v := range vars(t) {
		if v.Required {
			require.NotEmptyf(t, env[name], "%s does not set the required %s", where, name)
		}
	}
	if env["CMDTRACK_AMQP_ACCESS_KEY"] != "" {
		require.NotEmptyf(t, env["CMDTRACK_AMQP_ACCESS_CODE"], "%s: ACCESS_KEY needs ACCESS_CODE", where)
		require.NotEmptyf(t, env["CMDTRACK_AMQP_INSTANCE_ID"], "%s: ACCESS_KEY needs INSTANCE_ID", where)
	}
	if f := env["CMDTRACK_LOG_FORMAT"]; f != "" {
		require.Containsf(t, []string{"json", "text"}, f, "%s: CMDTRACK_LOG_FORMAT", where)
	}
	for _, name := range []string{"CMDTRACK_SHUTDOWN_GRACE", "CMDTRACK_BATCH_WAIT"} {
		if d := env[name]; d != "" {
			_, err := time.ParseDuration(d)
			require.NoErrorf(t, err, "%s: %s", where, name)
		}
	}
}

// shutdownGrace is CMDTRACK_SHUTDOWN_GRACE from env, or the default.
func shutdownGrace(t *testing.T, env map[string]string) time.Duration {
	t.Helper()
	s := env["CMDTRACK_SHUTDOWN_GRACE"]
	if s == "" {
		s = vars(t)["CMDTRACK_SHUTDOWN_GRACE"].Default
	}
	d, err := time.ParseDuration(s)
	require.NoError(t, err, "CMDTRACK_SHUTDOWN_GRACE %q", s)
	return d
}

// opsPortOf is the port of a CMDTRACK_OPS_ADDR value; the host must not be
// loopback (inside a container or pod that would make probes useless).
func opsPortOf(t *testing.T, where, addr string) int {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	require.NoErrorf(t, err, "%s: CMDTRACK_OPS_ADDR %q", where, addr)
	require.Containsf(t, []string{"", "0.0.0.0", "::"}, host, "%s: CMDTRACK_OPS_ADDR %q must listen beyond loopback", where, addr)
	p, err := strconv.Atoi(port)
	require.NoError(t, err)
	return p
}

func TestHelpListsVariables(t *testing.T) {
	t.Parallel()
	v := vars(t)
	require.True(t, v["CMDTRACK_DATABASE_URL"].Required)
	require.Contains(t, v, "CMDTRACK_AMQP_URL") // required by run only
	require.Equal(t, "20s", v["CMDTRACK_SHUTDOWN_GRACE"].Default)
	require.Equal(t, "true", v["CMDTRACK_MIGRATE_ON_START"].Default)
}
