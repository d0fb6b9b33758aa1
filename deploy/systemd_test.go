package deploy_test

import (
	"bufio"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/testenv"
)

// The systemd units and their environment file.

type unitFile map[string]map[string][]string // section -> key -> values in order

func parseUnit(t *testing.T, src string) unitFile {
	t.Helper()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(src))
	lineNo := 0
	var pending string
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if pending == "" && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if body, ok := strings.CutSuffix(line, `\`); ok {
			pending += body + " "
			continue
		}
		line, pending = pending+line, ""
		if strings.HasPrefix(line, "[") {
			require.Truef(t, strings.HasSuffix(line, "]"), "line %d: bad section header", lineNo)
			section = line[1 : len(line)-1]
			require.NotContainsf(t, u, section, "line %d: section [%s] twice", lineNo, section)
			u[section] = map[string][]string{}
			continue
		}
		require.NotEmptyf(t, section, "line %d: assignment outside a section", lineNo)
		k, v, ok := strings.Cut(line, "=")
		require.Truef(t, ok, "line %d: %q is not KEY=VALUE", lineNo, line)
		k = strings.TrimSpace(k)
		require.Regexpf(t, `^[A-Za-z][A-Za-z0-9]*$`, k, "line %d: key", lineNo)
		u[section][k] = append(u[section][k], strings.TrimSpace(v))
	}
	require.NoError(t, sc.Err())
	require.Empty(t, pending)
	return u
}

// get is the effective (last) value of a key.
func (u unitFile) get(section, key string) (string, bool) {
	v := u[section][key]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// parseTimespan parses the systemd time spans used here ("45s", "5min", "1h").
func parseTimespan(t *testing.T, s string) time.Duration {
	t.Helper()
	var total time.Duration
	re := regexp.MustCompile(`^\s*(\d+)\s*(ms|s|sec|m|min|h|hr)?`)
	units := map[string]time.Duration{"": time.Second, "ms": time.Millisecond, "s": time.Second, "sec": time.Second,
		"m": time.Minute, "min": time.Minute, "h": time.Hour, "hr": time.Hour}
	rest := s
	for strings.TrimSpace(rest) != "" {
		m := re.FindStringSubmatch(rest)
		require.NotNilf(t, m, "time span %q", s)
		n, _ := strconv.Atoi(m[1])
		total += time.Duration(n) * units[m[2]]
		rest = rest[len(m[0]):]
	}
	return total
}

// parseEnvFile reads a systemd EnvironmentFile: the assignments, and the
// names in commented-out assignments.
func parseEnvFile(t *testing.T, src string) (set map[string]string, commented []string) {
	t.Helper()
	set = map[string]string{}
	for i, line := range strings.Split(src, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if c, ok := strings.CutPrefix(line, "#"); ok {
			if m := regexp.MustCompile(`^(CMDTRACK_[A-Z0-9_]+)=`).FindStringSubmatch(strings.TrimSpace(c)); m != nil {
				commented = append(commented, m[1])
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		require.Truef(t, ok, "line %d: %q is not KEY=VALUE", i+1, line)
		require.NotContainsf(t, set, k, "line %d: %s twice", i+1, k)
		require.NotContainsf(t, k, "export", "line %d: systemd does not understand export", i+1)
		set[k] = v
	}
	return set, commented
}

func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	u := parseUnit(t, string(readFile(t, "deploy/systemd/cmdtrack.service")))
	require.Contains(t, u, "Unit")
	require.Contains(t, u, "Install")
	want := map[string]string{
		"Type":                    "notify",
		"NotifyAccess":            "main",
		"ExecStart":               "/usr/local/bin/cmdtrack",
		"EnvironmentFile":         "/etc/cmdtrack/cmdtrack.env",
		"Restart":                 "on-failure",
		"RestartSec":              "5s",
		"DynamicUser":             "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"NoNewPrivileges":         "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectKernelLogs":       "yes",
		"ProtectControlGroups":    "yes",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"RestrictNamespaces":      "yes",
		"LockPersonality":         "yes",
		"MemoryDenyWriteExecute":  "yes",
		"SystemCallArchitectures": "native",
		"CapabilityBoundingSet":   "",
	}
	for k, v := range want {
		got, ok := u.get("Service", k)
		require.Truef(t, ok, "[Service] %s is missing", k)
		require.Equalf(t, v, got, "[Service] %s", k)
	}
	require.Equal(t, "@system-service", u["Service"]["SystemCallFilter"][0])
	mem, ok := u.get("Service", "MemoryMax")
	require.True(t, ok, "MemoryMax")
	require.Regexp(t, `^\d+[KMG]?$`, mem)
	wd, ok := u.get("Service", "WatchdogSec")
	require.True(t, ok)
	require.Equal(t, 30*time.Second, parseTimespan(t, wd))

	env, commented := parseEnvFile(t, string(readFile(t, "deploy/systemd/cmdtrack.env.example")))
	requireKnownVars(t, "cmdtrack.env.example", append(slices.Collect(mapKeys(env)), commented...))
	requireCompleteConfig(t, "cmdtrack.env.example", env)
	for _, secret := range []string{"CMDTRACK_DATABASE_URL", "CMDTRACK_AMQP_ACCESS_CODE"} {
		require.Containsf(t, env[secret], placeholder, "cmdtrack.env.example: %s must be a placeholder", secret)
	}
	stop, ok := u.get("Service", "TimeoutStopSec")
	require.True(t, ok, "TimeoutStopSec")
	require.Greater(t, parseTimespan(t, stop), shutdownGrace(t, env)+5*time.Second,
		"TimeoutStopSec must leave room above CMDTRACK_SHUTDOWN_GRACE")
	require.Greater(t, parseTimespan(t, stop), shutdownGrace(t, nil)+5*time.Second)

	m := parseUnit(t, string(readFile(t, "deploy/systemd/cmdtrack-migrate.service")))
	mt, _ := m.get("Service", "Type")
	require.Equal(t, "oneshot", mt)
	me, _ := m.get("Service", "ExecStart")
	require.Equal(t, "/usr/local/bin/cmdtrack migrate", me)
	mf, _ := m.get("Service", "EnvironmentFile")
	require.Equal(t, want["EnvironmentFile"], mf)
	require.Contains(t, u["Unit"]["After"], "cmdtrack-migrate.service")
	for _, k := range []string{"DynamicUser", "ProtectSystem", "NoNewPrivileges", "CapabilityBoundingSet", "SystemCallFilter"} {
		require.Equalf(t, u["Service"][k], m["Service"][k], "cmdtrack-migrate.service %s", k)
	}
}

func TestSystemdConsoleUnit(t *testing.T) {
	t.Parallel()
	u := parseUnit(t, string(readFile(t, "deploy/systemd/cmdtrack-console.service")))
	w := parseUnit(t, string(readFile(t, "deploy/systemd/cmdtrack.service")))
	start, _ := u.get("Service", "ExecStart")
	require.Equal(t, "/usr/local/bin/cmdtrack console", start)
	ef, _ := u.get("Service", "EnvironmentFile")
	require.Equal(t, "/etc/cmdtrack/console.env", ef, "its own environment: a reader's database URL")
	rp, _ := u.get("Service", "RestartPreventExitStatus")
	require.Equal(t, "2", rp)
	for _, k := range []string{"DynamicUser", "ProtectSystem", "NoNewPrivileges", "CapabilityBoundingSet", "SystemCallFilter",
		"RestrictAddressFamilies", "MemoryDenyWriteExecute", "PrivateDevices"} {
		require.Equalf(t, w["Service"][k], u["Service"][k], "cmdtrack-console.service %s", k)
	}
	env, commented := parseEnvFile(t, string(readFile(t, "deploy/systemd/console.env.example")))
	requireKnownVars(t, "console.env.example", append(slices.Collect(mapKeys(env)), commented...))
	requireCompleteConfig(t, "console.env.example", env)
	require.Contains(t, env["CMDTRACK_DATABASE_URL"], placeholder)
	db, err := url.Parse(env["CMDTRACK_DATABASE_URL"])
	require.NoError(t, err)
	require.Equal(t, "cmdtrack_console", db.User.Username())
	host, _, err := net.SplitHostPort(env["CMDTRACK_CONSOLE_ADDR"])
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", host, "the example listens on loopback, where it needs no credentials")
}

// TestSystemdAnalyzeVerify runs systemd's own checks where systemd-analyze is
// installed (the parse checks above run everywhere).
func TestSystemdAnalyzeVerify(t *testing.T) {
	t.Parallel()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: only the parse checks in TestSystemdUnit apply")
		return
	}
	bin := testenv.Build(t, "cmd/cmdtrack")
	dir := t.TempDir()
	var units []string
	for _, name := range []string{"cmdtrack.service", "cmdtrack-migrate.service", "cmdtrack-console.service"} {
		src := strings.ReplaceAll(string(readFile(t, "deploy/systemd/"+name)), "/usr/local/bin/cmdtrack", bin)
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(src), 0o644))
		units = append(units, p)
	}
	out, err := exec.Command(analyze, append([]string{"verify"}, units...)...).CombinedOutput()
	require.NoErrorf(t, err, "systemd-analyze verify:\n%s", out)
	require.Emptyf(t, strings.TrimSpace(string(out)), "systemd-analyze verify warnings:\n%s", out)
}
