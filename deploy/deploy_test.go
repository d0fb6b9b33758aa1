// Package deploy_test checks the deployment artefacts offline: the Dockerfile
// and .dockerignore, docker-compose.yml, the systemd units, the Kubernetes
// manifests and the Grafana dashboard, against each other and against the
// code (the CMDTRACK_* variables `cmdtrack -h` prints, the metrics defined in
// consumer/metrics.go and pipeline/metrics.go).
//
// It is a module of its own so that Kubernetes', Compose's and Moby's
// packages stay out of the service's go.mod (and its Docker build).
package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
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

	composeloader "github.com/compose-spec/compose-go/v2/loader"
	composetypes "github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

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

// ---------------------------------------------------------------------------
// Dockerfile and .dockerignore

type dockerInstr struct {
	Cmd  string // upper case
	Args string
	Line int
}

// parseDockerfile returns the instructions, with continuation lines joined
// and comments dropped.
func parseDockerfile(t *testing.T, src string) []dockerInstr {
	t.Helper()
	var out []dockerInstr
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(trimmed, "#") {
			continue // comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if body, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, dockerInstr{Cmd: strings.ToUpper(cmd), Args: strings.Join(strings.Fields(args), " "), Line: start})
		cur.Reset()
	}
	require.Zero(t, cur.Len(), "Dockerfile ends inside a continued instruction")
	return out
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	instrs := parseDockerfile(t, string(readFile(t, "Dockerfile")))

	type stage struct {
		name, base string
		instrs     []dockerInstr
	}
	var stages []*stage
	globalArgs := map[string]bool{}
	for _, in := range instrs {
		switch {
		case in.Cmd == "FROM":
			f := strings.Fields(in.Args)
			var st stage
			for i := 0; i < len(f); i++ {
				switch {
				case strings.HasPrefix(f[i], "--"):
				case strings.EqualFold(f[i], "AS") && i+1 < len(f):
					st.name = f[i+1]
					i++
				default:
					st.base = f[i]
				}
			}
			stages = append(stages, &st)
		case len(stages) == 0:
			require.Containsf(t, []string{"ARG"}, in.Cmd, "line %d: only ARG may precede the first FROM", in.Line)
			name, _, _ := strings.Cut(in.Args, "=")
			globalArgs[name] = true
		default:
			stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
		}
	}
	require.GreaterOrEqual(t, len(stages), 2, "multi-stage build")

	// Base images are build arguments.
	require.True(t, globalArgs["GO_IMAGE"], "ARG GO_IMAGE before the first FROM")
	require.True(t, globalArgs["RUNTIME_IMAGE"], "ARG RUNTIME_IMAGE before the first FROM")
	stageNames := map[string]bool{}
	for _, st := range stages {
		require.Regexpf(t, `^\$\{?(GO_IMAGE|RUNTIME_IMAGE)\}?$`, st.base, "stage %q: base image must be ${GO_IMAGE} or ${RUNTIME_IMAGE}", st.name)
		stageNames[st.name] = true
	}
	build := stages[0]
	require.Regexp(t, `GO_IMAGE`, build.base)

	// The build: static, trimmed, versioned, both commands.
	var buildRun string
	for _, in := range build.instrs {
		if in.Cmd == "RUN" && strings.Contains(in.Args, "go build") {
			buildRun = in.Args
		}
	}
	require.NotEmpty(t, buildRun, "a RUN with go build in the first stage")
	require.Contains(t, buildRun, "CGO_ENABLED=0")
	require.Contains(t, buildRun, "-trimpath")
	require.Regexp(t, `-ldflags "-s -w -X main\.Version=\$\{?VERSION\}?"`, buildRun)
	for _, pkg := range regexp.MustCompile(`\./cmd/[a-z0-9-]+`).FindAllString(buildRun, -1) {
		_, err := os.Stat(filepath.Join(repoRoot, pkg, "main.go"))
		require.NoErrorf(t, err, "the Dockerfile builds %s", pkg)
	}
	require.Contains(t, buildRun, "./cmd/cmdtrack")
	require.Contains(t, buildRun, "./cmd/iotda-sim")

	// Every COPY --from names an earlier stage.
	for _, st := range stages {
		for _, in := range st.instrs {
			if m := regexp.MustCompile(`--from=(\S+)`).FindStringSubmatch(in.Args); in.Cmd == "COPY" && m != nil {
				require.Truef(t, stageNames[m[1]], "line %d: COPY --from=%s names no stage", in.Line, m[1])
			}
		}
	}

	// Every runtime stage runs as a numeric non-root user; the last one
	// (the default target) is cmdtrack.
	find := func(st *stage, cmd string) []string {
		var args []string
		for _, in := range st.instrs {
			if in.Cmd == cmd {
				args = append(args, in.Args)
			}
		}
		return args
	}
	for _, st := range stages[1:] {
		users := find(st, "USER")
		require.NotEmptyf(t, users, "stage %q has no USER", st.name)
		user := users[len(users)-1]
		uid, gid, _ := strings.Cut(user, ":")
		for _, id := range []string{uid, gid} {
			if id == "" {
				continue
			}
			n, err := strconv.Atoi(id)
			require.NoErrorf(t, err, "stage %q: USER %q must be numeric (runAsNonRoot cannot check names)", st.name, user)
			require.NotZerof(t, n, "stage %q: USER %q is root", st.name, user)
		}
		require.Equal(t, strconv.Itoa(nonRootUID), uid)
	}
	final := stages[len(stages)-1]
	require.Equal(t, []string{`["/cmdtrack"]`}, find(final, "ENTRYPOINT"))
	require.Contains(t, find(final, "EXPOSE"), strconv.Itoa(opsPort))
	env := strings.Join(find(final, "ENV"), " ")
	require.Regexp(t, `(^| )CMDTRACK_OPS_ADDR=:`+strconv.Itoa(opsPort)+`( |$)`, env)
	copies := strings.Join(find(final, "COPY"), "\n")
	require.Contains(t, copies, "/cmdtrack")
	require.Contains(t, copies, "/iotda-sim", "the compose load generator runs /iotda-sim from the same image")
}

func TestDockerignoreKeepsSources(t *testing.T) {
	t.Parallel()
	patterns, err := ignorefile.ReadAll(bytes.NewReader(readFile(t, ".dockerignore")))
	require.NoError(t, err)
	pm, err := patternmatcher.New(patterns)
	require.NoError(t, err)
	excluded := func(rel string) bool {
		ok, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel))
		require.NoError(t, err)
		return ok
	}
	require.True(t, excluded(".git/HEAD"))
	for _, f := range []string{"go.mod", "go.sum", "cmd/cmdtrack/main.go", "migrations/001_initial.sql"} {
		require.Falsef(t, excluded(f), ".dockerignore excludes %s, which the build needs", f)
	}
	// Every non-test Go file and every embedded file must reach the build.
	n := 0
	err = filepath.WalkDir(repoRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, p)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." || d.Name() == "testdata" || rel == "deploy" {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") || filepath.Dir(rel) == "migrations" {
			require.Falsef(t, excluded(rel), ".dockerignore excludes %s", rel)
			n++
		}
		return nil
	})
	require.NoError(t, err)
	require.Greater(t, n, 5)
}

// ---------------------------------------------------------------------------
// docker-compose.yml

// loadCompose loads docker-compose.yml as `docker compose` would with env as
// the whole environment. compose-go validates against the Compose JSON schema
// (unknown keys and wrong types are errors) and checks the cross-references
// (depends_on, volumes).
func loadCompose(t *testing.T, env composetypes.Mapping) (*composetypes.Project, string) {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join(repoRoot, "docker-compose.yml"))
	require.NoError(t, err)
	project, err := composeloader.LoadWithContext(context.Background(), composetypes.ConfigDetails{
		WorkingDir:  filepath.Dir(abs),
		ConfigFiles: []composetypes.ConfigFile{{Filename: abs}},
		Environment: env,
	}, func(o *composeloader.Options) { o.SetProjectName("cmdtrack", true) })
	require.NoError(t, err)
	return project, abs
}

// The images come from the environment where it names them, and are the
// official ones (and the Dockerfile's defaults) where it does not.
func TestComposeImagesFromEnvironment(t *testing.T) {
	t.Parallel()
	project, _ := loadCompose(t, composetypes.Mapping{})
	ct, err := project.GetService("cmdtrack")
	require.NoError(t, err)
	require.Equal(t, "cmdtrack:dev", ct.Image)
	require.NotNil(t, ct.Build)
	// Unset, they are not passed, and the Dockerfile's defaults apply.
	require.Nil(t, ct.Build.Args["GO_IMAGE"])
	require.Nil(t, ct.Build.Args["RUNTIME_IMAGE"])

	env := composetypes.Mapping{
		"CMDTRACK_POSTGRES_IMAGE": "mirror.example/postgres:15",
		"CMDTRACK_RABBITMQ_IMAGE": "mirror.example/rabbitmq:3.13",
		"CMDTRACK_IMAGE":          "cmdtrack:test",
		"GO_IMAGE":                "mirror.example/golang:1.26",
		"RUNTIME_IMAGE":           "mirror.example/static:nonroot",
	}
	project, _ = loadCompose(t, env)
	images := map[string]string{}
	for name, s := range project.Services {
		images[name] = s.Image
	}
	require.Equal(t, map[string]string{
		"postgres":       env["CMDTRACK_POSTGRES_IMAGE"],
		"rabbitmq":       env["CMDTRACK_RABBITMQ_IMAGE"],
		"cmdtrack":       env["CMDTRACK_IMAGE"],
		"loadgen":        env["CMDTRACK_IMAGE"],
		"console":        env["CMDTRACK_IMAGE"],
		"console-reader": env["CMDTRACK_POSTGRES_IMAGE"],
	}, images)
	ct, err = project.GetService("cmdtrack")
	require.NoError(t, err)
	args := deref(ct.Build.Args)
	require.Equal(t, env["GO_IMAGE"], args["GO_IMAGE"])
	require.Equal(t, env["RUNTIME_IMAGE"], args["RUNTIME_IMAGE"])
	require.Equal(t, "compose", args["VERSION"])
	// Every build argument is one the Dockerfile declares.
	dockerfile := string(readFile(t, "Dockerfile"))
	for name := range ct.Build.Args {
		require.Regexpf(t, `(?m)^ARG `+name+`\b`, dockerfile, "docker-compose.yml passes build argument %s", name)
	}
}

func TestCompose(t *testing.T) {
	t.Parallel()
	// An empty environment keeps the test hermetic.
	project, abs := loadCompose(t, composetypes.Mapping{})

	names := slices.Sorted(func(yield func(string) bool) {
		for n := range project.Services {
			if !yield(n) {
				return
			}
		}
	})
	require.Equal(t, []string{"cmdtrack", "console", "console-reader", "loadgen", "postgres", "rabbitmq"}, names)
	svc := func(name string) composetypes.ServiceConfig {
		s, err := project.GetService(name)
		require.NoError(t, err)
		return s
	}
	healthTest := func(s composetypes.ServiceConfig) string {
		require.NotNilf(t, s.HealthCheck, "%s has a healthcheck", s.Name)
		require.False(t, s.HealthCheck.Disable)
		return strings.Join(s.HealthCheck.Test, " ")
	}

	pg := svc("postgres")
	require.Equal(t, "postgres:15-alpine", pg.Image)
	require.Contains(t, healthTest(pg), "pg_isready")
	pgEnv := deref(pg.Environment)

	rmq := svc("rabbitmq")
	require.Regexp(t, `^rabbitmq:3\.13`, rmq.Image)
	ep := strings.Join(rmq.Entrypoint, " ")
	require.Contains(t, ep, "rabbitmq-plugins enable --offline rabbitmq_amqp1_0")
	require.Regexp(t, `docker-entrypoint\.sh rabbitmq-server$`, ep)
	// ping answers before the listeners are up; the load generator needs them.
	require.Contains(t, healthTest(rmq), "rabbitmq-diagnostics -q check_port_connectivity")

	ct := svc("cmdtrack")
	require.NotNil(t, ct.Build)
	require.Equal(t, filepath.Dir(abs), ct.Build.Context)
	require.NotEmpty(t, ct.Image)
	for _, dep := range []string{"postgres", "rabbitmq"} {
		require.Containsf(t, ct.DependsOn, dep, "cmdtrack depends_on %s", dep)
		require.Equal(t, composetypes.ServiceConditionHealthy, ct.DependsOn[dep].Condition)
	}
	env := deref(ct.Environment)
	requireKnownVars(t, "docker-compose.yml", slices.Collect(mapKeys(env)))
	requireCompleteConfig(t, "docker-compose.yml", env)
	require.Equal(t, "amqp://guest:guest@rabbitmq:5672/", env["CMDTRACK_AMQP_URL"])
	require.Equal(t, "/queue/cmdtrack", env["CMDTRACK_AMQP_QUEUE"])
	require.Equal(t, "text", env["CMDTRACK_LOG_FORMAT"])
	db, err := url.Parse(env["CMDTRACK_DATABASE_URL"])
	require.NoError(t, err)
	require.Equal(t, "postgres", db.Hostname())
	require.Equal(t, pgEnv["POSTGRES_USER"], db.User.Username())
	pw, _ := db.User.Password()
	require.Equal(t, pgEnv["POSTGRES_PASSWORD"], pw)
	require.Equal(t, "/"+pgEnv["POSTGRES_DB"], db.Path)
	port := opsPortOf(t, "docker-compose.yml", env["CMDTRACK_OPS_ADDR"])
	require.Len(t, ct.Ports, 1)
	require.EqualValues(t, port, ct.Ports[0].Target)
	if ct.StopGracePeriod != nil {
		require.Greater(t, time.Duration(*ct.StopGracePeriod), shutdownGrace(t, env))
	}

	// The console: the same image, as the reader role the one-shot
	// console-reader makes, published on loopback only.
	cs := svc("console")
	require.Equal(t, ct.Image, cs.Image)
	require.Nil(t, cs.Build)
	require.Equal(t, []string{"console"}, []string(cs.Command))
	require.Contains(t, cs.DependsOn, "console-reader")
	require.Equal(t, composetypes.ServiceConditionCompletedSuccessfully, cs.DependsOn["console-reader"].Condition)
	cenv := deref(cs.Environment)
	requireKnownVars(t, "docker-compose.yml console", slices.Collect(mapKeys(cenv)))
	requireCompleteConfig(t, "docker-compose.yml console", cenv)
	cdb, err := url.Parse(cenv["CMDTRACK_DATABASE_URL"])
	require.NoError(t, err)
	require.Equal(t, "cmdtrack_console", cdb.User.Username())
	require.NotEmpty(t, cenv["CMDTRACK_CONSOLE_USER"], "beyond the container's loopback the console needs credentials")
	require.NotEmpty(t, cenv["CMDTRACK_CONSOLE_PASSWORD"])
	require.Len(t, cs.Ports, 1)
	require.Equal(t, "127.0.0.1", cs.Ports[0].HostIP)
	cr := svc("console-reader")
	require.Equal(t, pg.Image, cr.Image, "psql from the PostgreSQL image")
	require.Contains(t, strings.Join(cr.Command, " "), "cmdtrack_console")
	require.Equal(t, composetypes.ServiceConditionHealthy, cr.DependsOn["postgres"].Condition)

	lg := svc("loadgen")
	require.Equal(t, ct.Image, lg.Image, "the load generator uses the cmdtrack image")
	require.Nil(t, lg.Build)
	require.Equal(t, composetypes.PullPolicyNever, lg.PullPolicy)
	require.Equal(t, []string{"/iotda-sim"}, []string(lg.Entrypoint))
	require.Contains(t, lg.DependsOn, "rabbitmq")
	require.Equal(t, composetypes.ServiceConditionHealthy, lg.DependsOn["rabbitmq"].Condition)
	require.Contains(t, lg.DependsOn, "cmdtrack")
	require.Contains(t, []string{"", "no"}, lg.Restart)
	args := []string(lg.Command)
	require.NotEmpty(t, args)
	require.Equal(t, "publish", args[0])
	flags := map[string]string{}
	for i := 1; i+1 < len(args); i += 2 {
		require.Truef(t, strings.HasPrefix(args[i], "-"), "loadgen argument %q is not a flag", args[i])
		flags[strings.TrimLeft(args[i], "-")] = args[i+1]
	}
	simFlags, err := simPublishFlags(t)
	require.NoError(t, err)
	for f := range flags {
		require.Truef(t, simFlags[f], "loadgen passes -%s, which `iotda-sim publish -h` does not list", f)
	}
	require.Equal(t, env["CMDTRACK_AMQP_URL"], flags["url"])
	require.Equal(t, env["CMDTRACK_AMQP_QUEUE"], flags["queue"])
	require.Equal(t, "2000", flags["commands"])
	require.Equal(t, "200", flags["rate"])
}

func deref(m composetypes.MappingWithEquals) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if v != nil {
			out[k] = *v
		}
	}
	return out
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// ---------------------------------------------------------------------------
// systemd

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

// ---------------------------------------------------------------------------
// Kubernetes

// kustomization is the part of kustomize's Kustomization this base uses;
// anything else in the file is an error, so new features get checked here.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images,omitempty"`
}

type k8sObjects struct {
	deployments []*appsv1.Deployment
	jobs        []*batchv1.Job
	configMaps  []*corev1.ConfigMap
	secrets     []*corev1.Secret
	services    []*corev1.Service
	pdbs        []*policyv1.PodDisruptionBudget
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// loadKustomization decodes every document of every resource strictly into
// its typed API struct.
func loadKustomization(t *testing.T) (*kustomization, *k8sObjects) {
	t.Helper()
	const dir = "deploy/kubernetes"
	var k kustomization
	require.NoError(t, yaml.UnmarshalStrict(readFile(t, dir+"/kustomization.yaml"), &k))
	require.Equal(t, "kustomize.config.k8s.io/v1beta1", k.APIVersion)
	require.Equal(t, "Kustomization", k.Kind)
	require.NotEmpty(t, k.Resources)

	// No manifest left out of the kustomization.
	files, err := filepath.Glob(filepath.Join(repoRoot, dir, "*.yaml"))
	require.NoError(t, err)
	for _, f := range files {
		if base := filepath.Base(f); base != "kustomization.yaml" {
			require.Containsf(t, k.Resources, base, "%s is not listed in kustomization.yaml", base)
		}
	}

	objs := &k8sObjects{}
	for _, res := range k.Resources {
		require.NotContainsf(t, res, "..", "resource %s", res)
		data := readFile(t, dir+"/"+res)
		for i, doc := range docSep.Split(string(data), -1) {
			var probe map[string]any
			require.NoError(t, yaml.Unmarshal([]byte(doc), &probe))
			if len(probe) == 0 {
				continue // empty or comments only
			}
			var tm metav1.TypeMeta
			require.NoError(t, yaml.Unmarshal([]byte(doc), &tm))
			where := fmt.Sprintf("%s document %d (%s %s)", res, i+1, tm.APIVersion, tm.Kind)
			var into interface{ GetNamespace() string }
			switch tm.APIVersion + " " + tm.Kind {
			case "apps/v1 Deployment":
				o := &appsv1.Deployment{}
				objs.deployments, into = append(objs.deployments, o), o
			case "batch/v1 Job":
				o := &batchv1.Job{}
				objs.jobs, into = append(objs.jobs, o), o
			case "v1 ConfigMap":
				o := &corev1.ConfigMap{}
				objs.configMaps, into = append(objs.configMaps, o), o
			case "v1 Secret":
				o := &corev1.Secret{}
				objs.secrets, into = append(objs.secrets, o), o
			case "v1 Service":
				o := &corev1.Service{}
				objs.services, into = append(objs.services, o), o
			case "policy/v1 PodDisruptionBudget":
				o := &policyv1.PodDisruptionBudget{}
				objs.pdbs, into = append(objs.pdbs, o), o
			default:
				require.Failf(t, "unexpected kind", "%s: no typed check for this kind", where)
			}
			require.NoErrorf(t, yaml.UnmarshalStrict([]byte(doc), into), "%s: strict decode", where)
			require.Emptyf(t, into.GetNamespace(), "%s: the base sets no namespace", where)
		}
	}
	// The workers' and the console's (console.yaml).
	require.Len(t, objs.deployments, 2)
	require.Len(t, objs.jobs, 1)
	require.Len(t, objs.configMaps, 1)
	require.Len(t, objs.secrets, 2)
	require.Len(t, objs.services, 2)
	require.Len(t, objs.pdbs, 1)
	return &k, objs
}

// named is the object of that name.
func named[T interface{ GetName() string }](t *testing.T, objs []T, name string) T {
	t.Helper()
	for _, o := range objs {
		if o.GetName() == name {
			return o
		}
	}
	require.Failf(t, "missing object", "no %T named %s", *new(T), name)
	return *new(T)
}

func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	k, objs := loadKustomization(t)
	dep, job, cm, pdb := named(t, objs.deployments, "cmdtrack"), objs.jobs[0], objs.configMaps[0], objs.pdbs[0]
	sec, svc := named(t, objs.secrets, "cmdtrack"), named(t, objs.services, "cmdtrack-metrics")

	// ConfigMap and Secret: known variables, secrets only in the Secret and
	// only as placeholders, together a complete configuration.
	env := map[string]string{}
	for k, v := range cm.Data {
		env[k] = v
	}
	require.Empty(t, cm.BinaryData)
	require.Empty(t, sec.Data, "the Secret uses stringData placeholders only")
	require.NotEmpty(t, sec.StringData)
	for k, v := range sec.StringData {
		require.NotContainsf(t, env, k, "%s is in both the ConfigMap and the Secret", k)
		require.Containsf(t, v, placeholder, "Secret %s must be a placeholder, never a real value", k)
		env[k] = v
	}
	requireKnownVars(t, "ConfigMap", slices.Collect(mapKeys(cm.Data)))
	requireKnownVars(t, "Secret", slices.Collect(mapKeys(sec.StringData)))
	for _, secret := range []string{"CMDTRACK_DATABASE_URL", "CMDTRACK_AMQP_ACCESS_CODE", "CMDTRACK_AMQP_ACCESS_KEY"} {
		require.NotContainsf(t, cm.Data, secret, "%s belongs in the Secret", secret)
	}
	require.Contains(t, sec.StringData, "CMDTRACK_DATABASE_URL")
	require.Contains(t, sec.StringData, "CMDTRACK_AMQP_ACCESS_CODE")
	requireCompleteConfig(t, "ConfigMap+Secret", env)
	require.Equal(t, "false", cm.Data["CMDTRACK_MIGRATE_ON_START"], "the cmdtrack-migrate Job migrates")
	require.Equal(t, opsPort, opsPortOf(t, "ConfigMap", cm.Data["CMDTRACK_OPS_ADDR"]))
	grace := shutdownGrace(t, env)

	// The image the kustomization rewrites is the one the pods use.
	require.Len(t, k.Images, 1)
	require.Equal(t, imageName, k.Images[0].Name)

	// Deployment.
	require.NotNil(t, dep.Spec.Replicas)
	require.EqualValues(t, 2, *dep.Spec.Replicas)
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	require.NoError(t, err)
	require.False(t, sel.Empty())
	podLabels := labels.Set(dep.Spec.Template.Labels)
	require.True(t, sel.Matches(podLabels), "the Deployment selector matches its pod template")
	jobLabels := labels.Set(job.Spec.Template.Labels)
	require.False(t, sel.Matches(jobLabels), "the Deployment must not adopt the migrate Job's pods")
	pod := dep.Spec.Template.Spec
	require.NotNil(t, pod.TerminationGracePeriodSeconds)
	require.Greater(t, time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second, grace+5*time.Second,
		"terminationGracePeriodSeconds must leave room above CMDTRACK_SHUTDOWN_GRACE")
	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]
	requirePodBasics(t, "Deployment", pod, c, cm.Name, sec.Name)
	if len(c.Args) > 0 {
		require.Equal(t, []string{"run"}, c.Args)
	}
	var containerPort int32
	for _, p := range c.Ports {
		if p.ContainerPort == opsPort {
			containerPort = p.ContainerPort
			require.NotEmpty(t, p.Name)
		}
	}
	require.EqualValues(t, opsPort, containerPort, "containerPort %d", opsPort)
	for _, probe := range []struct {
		name string
		p    *corev1.Probe
		path string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		require.NotNilf(t, probe.p, "%s probe", probe.name)
		require.NotNilf(t, probe.p.HTTPGet, "%s probe is httpGet", probe.name)
		require.Equal(t, probe.path, probe.p.HTTPGet.Path)
		require.EqualValuesf(t, opsPort, resolvePort(t, c, probe.p.HTTPGet.Port), "%s probe port", probe.name)
	}
	for _, e := range c.Env {
		requireKnownVars(t, "Deployment env", []string{e.Name})
	}

	// Job.
	require.Equal(t, "cmdtrack-migrate", job.Name)
	require.NotNil(t, job.Spec.BackoffLimit)
	require.Positive(t, *job.Spec.BackoffLimit)
	jpod := job.Spec.Template.Spec
	require.Contains(t, []corev1.RestartPolicy{corev1.RestartPolicyNever, corev1.RestartPolicyOnFailure}, jpod.RestartPolicy)
	require.Len(t, jpod.Containers, 1)
	jc := jpod.Containers[0]
	require.Equal(t, []string{"migrate"}, jc.Args)
	require.Empty(t, jc.Command, "the image's ENTRYPOINT is /cmdtrack")
	require.Equal(t, c.Image, jc.Image)
	requirePodBasics(t, "Job", jpod, jc, cm.Name, sec.Name)

	// Service.
	require.NotEmpty(t, svc.Spec.Selector)
	svcSel := labels.SelectorFromSet(svc.Spec.Selector)
	require.True(t, svcSel.Matches(podLabels), "the Service selects the worker pods")
	require.False(t, svcSel.Matches(jobLabels), "the Service must not select the migrate Job")
	require.Len(t, svc.Spec.Ports, 1)
	require.EqualValues(t, opsPort, svc.Spec.Ports[0].Port)
	require.EqualValues(t, opsPort, resolvePort(t, c, svc.Spec.Ports[0].TargetPort))
	if svc.Annotations["prometheus.io/scrape"] != "" {
		require.Equal(t, "true", svc.Annotations["prometheus.io/scrape"])
		require.Equal(t, strconv.Itoa(opsPort), svc.Annotations["prometheus.io/port"])
		require.Equal(t, "/metrics", svc.Annotations["prometheus.io/path"])
	}

	// PodDisruptionBudget.
	require.NotNil(t, pdb.Spec.MinAvailable)
	require.Equal(t, intstr.FromInt32(1), *pdb.Spec.MinAvailable)
	require.Nil(t, pdb.Spec.MaxUnavailable)
	require.Less(t, pdb.Spec.MinAvailable.IntValue(), int(*dep.Spec.Replicas), "the PDB must allow one eviction")
	pdbSel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	require.NoError(t, err)
	require.False(t, pdbSel.Empty())
	require.True(t, pdbSel.Matches(podLabels), "the PDB selects the worker pods")
	require.False(t, pdbSel.Matches(jobLabels), "the PDB must not count the migrate Job")
}

// The console runs apart from the workers, as a reader, and cannot start
// beyond loopback without its credentials.
func TestKubernetesConsole(t *testing.T) {
	t.Parallel()
	_, objs := loadKustomization(t)
	worker := named(t, objs.deployments, "cmdtrack")
	dep, sec, svc := named(t, objs.deployments, "cmdtrack-console"), named(t, objs.secrets, "cmdtrack-console"), named(t, objs.services, "cmdtrack-console")
	workerSel, err := metav1.LabelSelectorAsSelector(worker.Spec.Selector)
	require.NoError(t, err)
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	require.NoError(t, err)
	podLabels := labels.Set(dep.Spec.Template.Labels)
	require.True(t, sel.Matches(podLabels))
	require.False(t, workerSel.Matches(podLabels), "the workers' Deployment must not adopt the console's pods")
	require.False(t, sel.Matches(labels.Set(worker.Spec.Template.Labels)), "nor the console's the workers'")
	for _, s := range objs.services {
		if s.Name != svc.Name {
			require.False(t, labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels), "%s selects the console", s.Name)
		}
	}
	for _, p := range objs.pdbs {
		ps, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		require.NoError(t, err)
		require.False(t, ps.Matches(podLabels), "%s counts the console", p.Name)
	}

	require.Len(t, dep.Spec.Template.Spec.Containers, 1)
	c := dep.Spec.Template.Spec.Containers[0]
	require.Equal(t, []string{"console"}, c.Args)
	require.Empty(t, c.Command, "the image's ENTRYPOINT is /cmdtrack")
	require.Equal(t, worker.Spec.Template.Spec.Containers[0].Image, c.Image)
	env := map[string]string{}
	for k, v := range sec.StringData {
		require.Containsf(t, v, placeholder, "Secret %s must be a placeholder", k)
		env[k] = v
	}
	require.Empty(t, sec.Data)
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	requireKnownVars(t, "console", slices.Collect(mapKeys(env)))
	requireCompleteConfig(t, "console", env)
	require.Len(t, c.EnvFrom, 1)
	require.Equal(t, sec.Name, c.EnvFrom[0].SecretRef.Name, "the console's own Secret: a reader's database URL")
	db, err := url.Parse(env["CMDTRACK_DATABASE_URL"])
	require.NoError(t, err)
	require.NotEqual(t, "cmdtrack", db.User.Username(), "the console connects as a reader, not as the worker")
	require.NotEmpty(t, env["CMDTRACK_CONSOLE_USER"], "beyond loopback the console needs credentials")
	require.NotEmpty(t, env["CMDTRACK_CONSOLE_PASSWORD"])
	_, port, err := net.SplitHostPort(env["CMDTRACK_CONSOLE_ADDR"])
	require.NoError(t, err)
	require.Len(t, c.Ports, 1)
	require.Equal(t, port, strconv.Itoa(int(c.Ports[0].ContainerPort)))
	require.Len(t, svc.Spec.Ports, 1)
	require.Equal(t, c.Ports[0].ContainerPort, resolvePort(t, c, svc.Spec.Ports[0].TargetPort))
	require.True(t, labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels))
	require.NotNil(t, c.ReadinessProbe)
	require.NotNil(t, c.LivenessProbe)

	// Same restricted profile as the workers, but its own Secret and no
	// ConfigMap: requirePodBasics' envFrom check does not apply.
	pod := dep.Spec.Template.Spec
	csc := c.SecurityContext
	require.NotNil(t, csc)
	require.True(t, *csc.ReadOnlyRootFilesystem)
	require.False(t, *csc.AllowPrivilegeEscalation)
	require.Equal(t, []corev1.Capability{"ALL"}, csc.Capabilities.Drop)
	require.True(t, *pod.SecurityContext.RunAsNonRoot)
	require.EqualValues(t, nonRootUID, *pod.SecurityContext.RunAsUser)
	require.False(t, *pod.AutomountServiceAccountToken)
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		require.Contains(t, c.Resources.Requests, res)
		require.Contains(t, c.Resources.Limits, res)
	}
}

// requirePodBasics checks what the worker and the migrate Job share: image,
// configuration, resources and the restricted security profile.
func requirePodBasics(t *testing.T, where string, pod corev1.PodSpec, c corev1.Container, configMap, secret string) {
	t.Helper()
	require.Regexpf(t, `^`+imageName+`(:|@|$)`, c.Image, "%s image (kustomization images: rewrites %q)", where, imageName)

	var refs []string
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			refs = append(refs, "ConfigMap/"+ef.ConfigMapRef.Name)
		case ef.SecretRef != nil:
			refs = append(refs, "Secret/"+ef.SecretRef.Name)
		}
	}
	require.ElementsMatchf(t, []string{"ConfigMap/" + configMap, "Secret/" + secret}, refs, "%s envFrom", where)

	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, ok := c.Resources.Requests[res]
		require.Truef(t, ok, "%s requests %s", where, res)
		lim, ok := c.Resources.Limits[res]
		require.Truef(t, ok, "%s limits %s", where, res)
		require.LessOrEqualf(t, req.Cmp(lim), 0, "%s: %s request above its limit", where, res)
	}

	psc, csc := pod.SecurityContext, c.SecurityContext
	require.NotNilf(t, csc, "%s container securityContext", where)
	runAsNonRoot := csc.RunAsNonRoot
	runAsUser := csc.RunAsUser
	seccomp := csc.SeccompProfile
	if psc != nil {
		runAsNonRoot = cmpOr(runAsNonRoot, psc.RunAsNonRoot)
		runAsUser = cmpOr(runAsUser, psc.RunAsUser)
		seccomp = cmpOr(seccomp, psc.SeccompProfile)
	}
	require.NotNilf(t, runAsNonRoot, "%s runAsNonRoot", where)
	require.Truef(t, *runAsNonRoot, "%s runAsNonRoot", where)
	require.NotNilf(t, runAsUser, "%s runAsUser", where)
	require.EqualValuesf(t, nonRootUID, *runAsUser, "%s runAsUser", where)
	require.NotNilf(t, seccomp, "%s seccompProfile", where)
	require.Equalf(t, corev1.SeccompProfileTypeRuntimeDefault, seccomp.Type, "%s seccompProfile", where)
	require.NotNilf(t, csc.ReadOnlyRootFilesystem, "%s readOnlyRootFilesystem", where)
	require.Truef(t, *csc.ReadOnlyRootFilesystem, "%s readOnlyRootFilesystem", where)
	require.NotNilf(t, csc.AllowPrivilegeEscalation, "%s allowPrivilegeEscalation", where)
	require.Falsef(t, *csc.AllowPrivilegeEscalation, "%s allowPrivilegeEscalation", where)
	if csc.Privileged != nil {
		require.Falsef(t, *csc.Privileged, "%s privileged", where)
	}
	require.NotNilf(t, csc.Capabilities, "%s capabilities", where)
	require.Equalf(t, []corev1.Capability{"ALL"}, csc.Capabilities.Drop, "%s capabilities.drop", where)
	require.Emptyf(t, csc.Capabilities.Add, "%s capabilities.add", where)
	if pod.AutomountServiceAccountToken != nil {
		require.Falsef(t, *pod.AutomountServiceAccountToken, "%s needs no API access", where)
	}
}

func cmpOr[T any](a, b *T) *T {
	if a != nil {
		return a
	}
	return b
}

// resolvePort turns a port number or a container port name into a number.
func resolvePort(t *testing.T, c corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	require.Failf(t, "unknown port name", "container %s has no port named %q", c.Name, p.StrVal)
	return 0
}

// ---------------------------------------------------------------------------
// Grafana

type metricDef struct {
	kind   string // Counter, CounterVec, Gauge, Histogram, ...
	labels []string
}

// metricSources are the files that define cmdtrack's metrics.
var metricSources = []string{"consumer/metrics.go", "pipeline/metrics.go"}

// definedMetrics reads the metric definitions from metricSources.
func definedMetrics(t *testing.T) map[string]metricDef {
	t.Helper()
	var src string
	for _, f := range metricSources {
		src += string(readFile(t, f))
	}
	re := regexp.MustCompile(`prometheus\.New(\w+)\(prometheus\.\w+Opts\{\s*Name:\s*"(cmdtrack_[a-z0-9_]+)"[^}]*\}(?:,\s*\[\]string\{([^}]*)\})?`)
	defs := map[string]metricDef{}
	for _, m := range re.FindAllStringSubmatch(src, -1) {
		var lbls []string
		for _, l := range strings.Split(m[3], ",") {
			if l = strings.Trim(strings.TrimSpace(l), `"`); l != "" {
				lbls = append(lbls, l)
			}
		}
		defs[m[2]] = metricDef{kind: m[1], labels: lbls}
	}
	// Cross-check the regexp against a plain count of Name: fields.
	require.Len(t, defs, strings.Count(src, `Name: "cmdtrack_`), "every metric in %v was parsed", metricSources)
	require.GreaterOrEqual(t, len(defs), 10)
	return defs
}

func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	defs := definedMetrics(t)
	require.Contains(t, defs, "cmdtrack_apply_duration_seconds")
	require.Equal(t, "Histogram", defs["cmdtrack_apply_duration_seconds"].kind)
	require.Equal(t, []string{"class"}, defs["cmdtrack_database_errors_total"].labels)

	type target struct {
		Expr       string            `json:"expr"`
		RefID      string            `json:"refId"`
		Datasource map[string]string `json:"datasource"`
	}
	type panel struct {
		ID         int               `json:"id"`
		Type       string            `json:"type"`
		Title      string            `json:"title"`
		Datasource map[string]string `json:"datasource"`
		GridPos    struct{ H, W, X, Y int }
		Targets    []target `json:"targets"`
		Panels     []panel  `json:"panels"`
	}
	var dash struct {
		Inputs []struct {
			Name     string `json:"name"`
			Type     string `json:"type"`
			PluginID string `json:"pluginId"`
		} `json:"__inputs"`
		SchemaVersion int     `json:"schemaVersion"`
		Title         string  `json:"title"`
		UID           string  `json:"uid"`
		Panels        []panel `json:"panels"`
		Templating    struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	raw := readFile(t, "deploy/grafana/cmdtrack.json")
	require.True(t, json.Valid(raw))
	require.NoError(t, json.Unmarshal(raw, &dash))
	require.GreaterOrEqual(t, dash.SchemaVersion, 36)
	require.NotEmpty(t, dash.Title)
	require.NotEmpty(t, dash.UID)
	require.Len(t, dash.Inputs, 1)
	require.Equal(t, "DS_PROMETHEUS", dash.Inputs[0].Name)
	require.Equal(t, "prometheus", dash.Inputs[0].PluginID)
	templVars := map[string]bool{}
	for _, v := range dash.Templating.List {
		templVars[v.Name] = true
	}

	var all []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			all = append(all, p)
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	ids := map[int]bool{}
	used := map[string]bool{}
	metricRe := regexp.MustCompile(`\bcmdtrack_[a-z0-9_]+`)
	byRe := regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	varRe := regexp.MustCompile(`\$(?:\{)?([A-Za-z_]+)`)
	builtinVars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	for _, p := range all {
		require.Falsef(t, ids[p.ID], "panel id %d twice", p.ID)
		ids[p.ID] = true
		require.LessOrEqualf(t, p.GridPos.X+p.GridPos.W, 24, "panel %q is wider than the grid", p.Title)
		if p.Type == "row" {
			continue
		}
		require.NotEmptyf(t, p.Targets, "panel %q has no queries", p.Title)
		require.Equalf(t, "${DS_PROMETHEUS}", p.Datasource["uid"], "panel %q datasource", p.Title)
		for _, tg := range p.Targets {
			where := fmt.Sprintf("panel %q query %s", p.Title, tg.RefID)
			require.NotEmptyf(t, tg.Expr, where)
			if tg.Datasource != nil {
				require.Equalf(t, "${DS_PROMETHEUS}", tg.Datasource["uid"], where)
			}
			require.Equalf(t, strings.Count(tg.Expr, "("), strings.Count(tg.Expr, ")"), "%s: unbalanced parentheses", where)
			require.Equalf(t, strings.Count(tg.Expr, "{"), strings.Count(tg.Expr, "}"), "%s: unbalanced braces", where)
			for _, v := range varRe.FindAllStringSubmatch(tg.Expr, -1) {
				require.Truef(t, builtinVars[v[1]] || templVars[v[1]], "%s uses undefined variable $%s", where, v[1])
			}
			allowed := map[string]bool{"job": true, "instance": true}
			for _, name := range metricRe.FindAllString(tg.Expr, -1) {
				base := name
				suffix := ""
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(name, s); ok {
						if _, defined := defs[b]; defined {
							base, suffix = b, s
						}
					}
				}
				def, ok := defs[base]
				require.Truef(t, ok, "%s uses %s, which %v do not define", where, name, metricSources)
				histogram := strings.HasPrefix(def.kind, "Histogram")
				require.Equalf(t, histogram, suffix != "", "%s: %s (a %s) must be used with _bucket/_sum/_count exactly when it is a histogram", where, name, def.kind)
				if strings.HasPrefix(def.kind, "Counter") {
					require.Regexpf(t, `(rate|increase)\(`+name+`\b`, tg.Expr, "%s: counter %s must be used through rate() or increase()", where, name)
				}
				if suffix == "_bucket" {
					allowed["le"] = true
					require.Containsf(t, tg.Expr, "histogram_quantile(", where)
				}
				for _, l := range def.labels {
					allowed[l] = true
				}
				used[base] = true
			}
			for _, m := range byRe.FindAllStringSubmatch(tg.Expr, -1) {
				for _, l := range strings.Split(m[1], ",") {
					l = strings.TrimSpace(l)
					require.Truef(t, allowed[l], "%s groups by %q, which its metrics do not have", where, l)
				}
			}
			if strings.Contains(tg.Expr, "histogram_quantile(") {
				require.Regexpf(t, `histogram_quantile\(0?\.\d+,\s*sum by \([^)]*\ble\b[^)]*\) \(rate\(cmdtrack_[a-z_]+_bucket\{`, tg.Expr, where)
			}
		}
	}
	for name := range defs {
		require.Truef(t, used[name], "no panel shows %s", name)
	}
}
