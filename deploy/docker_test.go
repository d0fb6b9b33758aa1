//go:build docker

package deploy_test

// The container path for real (`make test/docker`, build tag docker): the
// Dockerfile's image built and run the way the Kubernetes manifests run it,
// and docker-compose.yml brought up, checked and taken down. They need a
// Docker engine with buildx and Compose v2 (the docker CLI), and use the
// images named by CMDTRACK_TEST_GO_IMAGE and CMDTRACK_TEST_RUNTIME_IMAGE (the
// Dockerfile's base images; unset, its defaults) and by
// CMDTRACK_TEST_POSTGRES_IMAGE and CMDTRACK_TEST_RABBITMQ_IMAGE (unset, the
// official ones): scripts/dockerenv.sh provides all of it. Without them they
// fail; they never skip.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/stretchr/testify/require"
	"github.com/testcontainers/testcontainers-go"
	tcexec "github.com/testcontainers/testcontainers-go/exec"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/cmdtrack/cmdtrack/internal/testenv"
)

// The label the leak check (scripts/dockerenv.sh leaks) looks for, besides
// testcontainers' own and Compose projects named cmdtrack-test-*.
const testLabel = "cmdtrack.test"

// stopTimeout is what docker-compose.yml gives cmdtrack to stop
// (stop_grace_period), above its CMDTRACK_SHUTDOWN_GRACE of 20s.
const stopTimeout = 45 * time.Second

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// dockerCLI runs the docker CLI and returns its standard output; it fails
// the test, with everything the command printed, if the command fails.
func dockerCLI(t *testing.T, timeout time.Duration, env []string, args ...string) string {
	t.Helper()
	out, err := runDocker(timeout, env, args...)
	require.NoErrorf(t, err, "docker %s:\n%s", strings.Join(args, " "), out)
	return out
}

func runDocker(timeout time.Duration, env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %w", args[0], err)
	}
	return string(out), nil
}

// baseImageArgs are the build arguments that point the Dockerfile's base
// images at CMDTRACK_TEST_GO_IMAGE and CMDTRACK_TEST_RUNTIME_IMAGE, as
// KEY=VALUE; unset variables leave the Dockerfile's defaults.
func baseImageArgs() []string {
	var args []string
	for arg, env := range map[string]string{"GO_IMAGE": "CMDTRACK_TEST_GO_IMAGE", "RUNTIME_IMAGE": "CMDTRACK_TEST_RUNTIME_IMAGE"} {
		if v := os.Getenv(env); v != "" {
			args = append(args, arg+"="+v)
		}
	}
	return args
}

// goImageIsOffline reports whether the Go image brings its modules along
// (the local one's GOPROXY is a directory in the image): then the build must
// succeed without any network, and runs without one.
func goImageIsOffline(t *testing.T) bool {
	t.Helper()
	img := os.Getenv("CMDTRACK_TEST_GO_IMAGE")
	if img == "" {
		return false
	}
	env := dockerCLI(t, time.Minute, nil, "image", "inspect", "--format", "{{range .Config.Env}}{{println .}}{{end}}", img)
	return regexp.MustCompile(`(?m)^GOPROXY=file://`).MatchString(env)
}

// buildImage builds the Dockerfile's target (its last stage if empty) into
// tag and removes the image when the test ends.
func buildImage(t *testing.T, tag, target string) {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	require.NoError(t, err)
	args := []string{"build", "--progress=plain", "--build-arg", "VERSION=docker-test", "-t", tag}
	if target != "" {
		args = append(args, "--target", target)
	}
	for _, a := range baseImageArgs() {
		args = append(args, "--build-arg", a)
	}
	if goImageIsOffline(t) {
		args = append(args, "--network=none")
	}
	t.Cleanup(func() {
		if out, err := runDocker(time.Minute, nil, "image", "rm", "-f", tag); err != nil {
			t.Errorf("remove image %s: %v\n%s", tag, err, out)
		}
	})
	start := time.Now()
	dockerCLI(t, 20*time.Minute, nil, append(args, root)...)
	t.Logf("docker build: %s", time.Since(start).Round(time.Second))
}

type imageInfo struct {
	Size   int64
	Config struct {
		User         string
		Entrypoint   []string
		ExposedPorts map[string]any
		Env          []string
	}
}

func inspectImage(t *testing.T, tag string) imageInfo {
	t.Helper()
	var info []imageInfo
	require.NoError(t, json.Unmarshal([]byte(dockerCLI(t, time.Minute, nil, "image", "inspect", tag)), &info))
	require.Len(t, info, 1)
	return info[0]
}

// startService starts a container from req on net under alias, removed when
// the test ends.
func startService(ctx context.Context, t *testing.T, req testcontainers.ContainerRequest, net, alias string) testcontainers.Container {
	t.Helper()
	req.Networks = []string{net}
	req.NetworkAliases = map[string][]string{net: {alias}}
	req.Labels = map[string]string{testLabel: "true"}
	c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{ContainerRequest: req, Started: true})
	testcontainers.CleanupContainer(t, c)
	require.NoError(t, err, "start %s", req.Image)
	return c
}

// asDeployed makes a container run as deploy/kubernetes' securityContext
// runs cmdtrack: the image's non-root user, a read-only root file system, no
// capabilities, no privilege escalation.
func asDeployed(hc *container.HostConfig) {
	hc.ReadonlyRootfs = true
	hc.CapDrop = []string{"ALL"}
	hc.SecurityOpt = []string{"no-new-privileges"}
}

// runToCompletion runs one command of the image (its entrypoint replaced)
// as deployed, waits for it to exit, and returns its exit code and output.
func runToCompletion(ctx context.Context, t *testing.T, image, net string, mounts testcontainers.ContainerMounts, cmd ...string) (int, string) {
	t.Helper()
	c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
		ContainerRequest: testcontainers.ContainerRequest{
			Image:              image,
			Entrypoint:         cmd[:1],
			Cmd:                cmd[1:],
			Networks:           []string{net},
			Mounts:             mounts,
			Labels:             map[string]string{testLabel: "true"},
			HostConfigModifier: asDeployed,
			WaitingFor:         wait.ForExit().WithExitTimeout(5 * time.Minute),
		},
		Started: true,
	})
	testcontainers.CleanupContainer(t, c)
	require.NoError(t, err, "run %v", cmd)
	state, err := c.State(ctx)
	require.NoError(t, err)
	return state.ExitCode, containerLogs(ctx, t, c)
}

func containerLogs(ctx context.Context, t *testing.T, c testcontainers.Container) string {
	t.Helper()
	rc, err := c.Logs(ctx)
	require.NoError(t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	return string(b)
}

// psql runs a query in the PostgreSQL container and returns its one value.
func psql(ctx context.Context, t *testing.T, pg testcontainers.Container, query string) string {
	t.Helper()
	code, r, err := pg.Exec(ctx, []string{"psql", "-U", testenv.PostgresUser, "-d", testenv.PostgresDB, "-tAc", query}, tcexec.Multiplexed())
	require.NoError(t, err)
	out, err := io.ReadAll(r)
	require.NoError(t, err)
	require.Zerof(t, code, "psql %q:\n%s", query, out)
	return strings.TrimSpace(string(out))
}

// metric sums the samples of one metric family in Prometheus' text format.
func metric(body, name string) (float64, bool) {
	var sum float64
	found := false
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err == nil {
			sum += v
			found = true
		}
	}
	return sum, found
}

func httpGet(url string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitFor polls check until it reports done, and fails the test with the
// last state it described if that takes longer than timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, check func() (done bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done, state := check()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last: %s)", what, timeout, state)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// requireDrained waits until cmdtrack (its ops server at opsURL) has received
// at least published messages and holds none unsettled.
func requireDrained(t *testing.T, opsURL string, published int) {
	t.Helper()
	waitFor(t, 3*time.Minute, fmt.Sprintf("cmdtrack drains the %d published messages", published), func() (bool, string) {
		code, body := httpGet(opsURL + "/metrics")
		if code != http.StatusOK {
			return false, fmt.Sprintf("/metrics: %d %s", code, body)
		}
		received, ok1 := metric(body, "cmdtrack_messages_received_total")
		unsettled, ok2 := metric(body, "cmdtrack_messages_unsettled")
		return ok1 && ok2 && received >= float64(published) && unsettled == 0,
			fmt.Sprintf("received %v, unsettled %v", received, unsettled)
	})
}

// The simulator's summary line: publish: N messages (C commands, D distinct
// notifications, P distinct poison, F foreign) ...
var publishSummary = regexp.MustCompile(`publish: (\d+) messages \((\d+) commands, \d+ distinct notifications, (\d+) distinct poison`)

type published struct{ messages, commands, poison int }

func parsePublish(t *testing.T, out string) published {
	t.Helper()
	m := publishSummary.FindStringSubmatch(out)
	require.NotNilf(t, m, "no summary in the simulator's output:\n%s", out)
	var p published
	for i, dst := range []*int{&p.messages, &p.commands, &p.poison} {
		n, err := strconv.Atoi(m[i+1])
		require.NoError(t, err)
		*dst = n
	}
	return p
}

// logRecords are a JSON log's records; lines that are not JSON are kept
// under "msg" so that nothing said is lost.
func logRecords(out string) []map[string]any {
	var recs []map[string]any
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) != nil {
			r = map[string]any{"msg": line, "level": "UNPARSED"}
		}
		recs = append(recs, r)
	}
	return recs
}

// TestDockerImage builds the Dockerfile and runs the image as the
// Kubernetes manifests do, against PostgreSQL and RabbitMQ containers: it
// migrates, consumes the simulator's stream (run from the same image, as
// docker-compose.yml's loadgen does) into exactly the rows the stream must
// give, answers /readyz, and stops cleanly on `docker stop` within the grace
// period.
func TestDockerImage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	suffix := randomSuffix()
	image := "cmdtrack-test/cmdtrack:" + suffix
	buildImage(t, image, "")

	// What the Dockerfile promises and the manifests rely on.
	info := inspectImage(t, image)
	require.Equal(t, fmt.Sprintf("%d:%d", nonRootUID, nonRootUID), info.Config.User)
	require.Equal(t, []string{"/cmdtrack"}, info.Config.Entrypoint)
	require.Contains(t, info.Config.ExposedPorts, fmt.Sprintf("%d/tcp", opsPort))
	t.Logf("image %s: %.1f MB, user %s, base %s", image, float64(info.Size)/1e6, info.Config.User, runtimeImage())
	// The runtime base has no shell, and cmdtrack needs none.
	out, err := runDocker(time.Minute, nil, "run", "--rm", "--label", testLabel+"=true", "--entrypoint", "/bin/sh", image, "-c", "true")
	require.Errorf(t, err, "the image has a shell:\n%s", out)

	nw, err := network.New(ctx, network.WithLabels(map[string]string{testLabel: "true"}))
	testcontainers.CleanupNetwork(t, nw)
	require.NoError(t, err)
	pg := startService(ctx, t, testenv.PostgresContainer(), nw.Name, "postgres")
	startService(ctx, t, testenv.BrokerContainer(), nw.Name, "rabbitmq")
	dbURL := fmt.Sprintf("postgres://%s:%s@postgres:5432/%s?sslmode=disable", testenv.PostgresUser, testenv.PostgresPassword, testenv.PostgresDB)
	amqpURL := "amqp://guest:guest@rabbitmq:5672/"
	const queue = "/queue/cmdtrack"

	opsPortSpec := fmt.Sprintf("%d/tcp", opsPort)
	worker, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
		ContainerRequest: testcontainers.ContainerRequest{
			Image: image,
			Env: map[string]string{
				"CMDTRACK_DATABASE_URL": dbURL,
				"CMDTRACK_AMQP_URL":     amqpURL,
				"CMDTRACK_AMQP_QUEUE":   queue,
				"CMDTRACK_LOG_FORMAT":   "json",
			},
			ExposedPorts:       []string{opsPortSpec},
			Networks:           []string{nw.Name},
			Labels:             map[string]string{testLabel: "true"},
			HostConfigModifier: asDeployed,
			// Ready means: migrated, links attached, database answering.
			WaitingFor: wait.ForHTTP("/readyz").WithPort(opsPortSpec).WithStartupTimeout(2 * time.Minute),
		},
		Started: true,
	})
	testcontainers.CleanupContainer(t, worker)
	require.NoError(t, err)
	defer func() {
		if t.Failed() {
			t.Logf("cmdtrack's output:\n%s", containerLogs(ctx, t, worker))
		}
	}()
	opsEndpoint, err := worker.PortEndpoint(ctx, opsPortSpec, "http")
	require.NoError(t, err)

	// It runs as the image's user, not root.
	top := dockerCLI(t, time.Minute, nil, "top", worker.GetContainerID(), "-o", "pid,uid,comm")
	require.Regexpf(t, `(?m)^\s*\d+\s+`+strconv.Itoa(nonRootUID)+`\s+cmdtrack\s*$`, top, "docker top:\n%s", top)

	// The stream, with its expected final state written where the image's
	// user may write: a fresh volume on /home/nonroot, which Docker fills
	// from the image, ownership included.
	vol := "cmdtrack-test-" + suffix
	dockerCLI(t, time.Minute, nil, "volume", "create", "--label", testLabel+"=true", vol)
	t.Cleanup(func() {
		if out, err := runDocker(time.Minute, nil, "volume", "rm", "-f", vol); err != nil {
			t.Errorf("remove volume %s: %v\n%s", vol, err, out)
		}
	})
	home := testcontainers.ContainerMounts{testcontainers.VolumeMount(vol, "/home/nonroot")}
	code, simOut := runToCompletion(ctx, t, image, nw.Name, home, "/iotda-sim", "publish",
		"-url", amqpURL, "-queue", queue, "-commands", "400", "-seed", "13",
		"-out-of-order", "0.2", "-duplicate", "0.05", "-poison", "0.01", "-quiet",
		"-expect", "/home/nonroot/expect.jsonl")
	require.Zerof(t, code, "iotda-sim publish:\n%s", simOut)
	pub := parsePublish(t, simOut)
	require.Equal(t, 400, pub.commands)
	t.Logf("iotda-sim published %d messages (%d commands, %d distinct poison)", pub.messages, pub.commands, pub.poison)

	requireDrained(t, opsEndpoint, pub.messages)
	code, verifyOut := runToCompletion(ctx, t, image, nw.Name, home, "/iotda-sim", "verify",
		"-expect", "/home/nonroot/expect.jsonl", "-exact", "-database-url", dbURL)
	require.Zerof(t, code, "iotda-sim verify:\n%s", verifyOut)
	require.Contains(t, verifyOut, "verify: 400 commands, 0 mismatches")
	status, body := httpGet(opsEndpoint + "/readyz")
	require.Equalf(t, http.StatusOK, status, "/readyz after the stream: %s", body)
	// It migrated the schema to the last of the migrations it embeds.
	migrations, err := filepath.Glob(filepath.Join(repoRoot, "migrations", "*.sql"))
	require.NoError(t, err)
	require.NotEmpty(t, migrations)
	require.Equal(t, strconv.Itoa(len(migrations)), psql(ctx, t, pg, "SELECT version FROM cmdtrack_schema_version"))
	require.Equal(t, strconv.Itoa(pub.poison), psql(ctx, t, pg, "SELECT count(*) FROM dead_letters"),
		"each distinct poison message is stored once as a dead letter")

	// docker stop: SIGTERM, then SIGKILL after the timeout. cmdtrack must
	// finish on its own, well within its grace period.
	start := time.Now()
	timeout := stopTimeout
	require.NoError(t, worker.Stop(ctx, &timeout))
	took := time.Since(start)
	state, err := worker.State(ctx)
	require.NoError(t, err)
	require.Zerof(t, state.ExitCode, "exit code after docker stop (took %s)", took)
	require.False(t, state.OOMKilled)
	require.Lessf(t, took, 20*time.Second, "docker stop took %s; CMDTRACK_SHUTDOWN_GRACE is 20s", took)
	t.Logf("docker stop: %s", took.Round(time.Millisecond))

	recs := logRecords(containerLogs(ctx, t, worker))
	var msgs []string
	for _, r := range recs {
		msg, _ := r["msg"].(string)
		msgs = append(msgs, msg)
		require.NotContainsf(t, []string{"ERROR", "UNPARSED"}, r["level"], "log record %v", r)
	}
	// Not necessarily the last record: the pipeline's "draining" line comes
	// from a goroutine of its own and may be written after it.
	require.Contains(t, msgs, "cmdtrack stopped cleanly")
}

// runtimeImage is the base the image is built on.
func runtimeImage() string {
	if v := os.Getenv("CMDTRACK_TEST_RUNTIME_IMAGE"); v != "" {
		return v
	}
	return "the Dockerfile's RUNTIME_IMAGE"
}

// TestDockerSimulatorImage builds the Dockerfile's iotda-sim target, the
// simulator alone, and runs it as deployed.
func TestDockerSimulatorImage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	image := "cmdtrack-test/iotda-sim:" + randomSuffix()
	buildImage(t, image, "iotda-sim")
	info := inspectImage(t, image)
	require.Equal(t, fmt.Sprintf("%d:%d", nonRootUID, nonRootUID), info.Config.User)
	require.Equal(t, []string{"/iotda-sim"}, info.Config.Entrypoint)
	t.Logf("image %s: %.1f MB, user %s, base %s", image, float64(info.Size)/1e6, info.Config.User, runtimeImage())

	nw, err := network.New(ctx, network.WithLabels(map[string]string{testLabel: "true"}))
	testcontainers.CleanupNetwork(t, nw)
	require.NoError(t, err)
	code, out := runToCompletion(ctx, t, image, nw.Name, nil, "/iotda-sim", "help")
	require.Zerof(t, code, "iotda-sim help:\n%s", out)
	require.Contains(t, out, "iotda-sim publish")
}

// TestDockerCompose brings docker-compose.yml up as the README says, with
// its images from the environment: the load generator's 2000 commands appear
// as rows and its poison messages as dead letters, cmdtrack stops cleanly,
// and `docker compose down -v` leaves no container, network or volume of the
// project behind.
func TestDockerCompose(t *testing.T) {
	t.Parallel()
	suffix := randomSuffix()
	project := "cmdtrack-test-" + suffix
	file, err := filepath.Abs(filepath.Join(repoRoot, "docker-compose.yml"))
	require.NoError(t, err)
	// The published ops and console ports: random ones on loopback, instead
	// of 9464 and 9465 that `make run` and `cmdtrack console` use on this
	// machine.
	override := filepath.Join(t.TempDir(), "compose.test.yml")
	require.NoError(t, os.WriteFile(override, []byte("services:\n  cmdtrack:\n    ports: !override\n      - \"127.0.0.1::9464\"\n"+
		"  console:\n    ports: !override\n      - \"127.0.0.1::9465\"\n"), 0o644))

	image := "cmdtrack-test/compose:" + suffix
	env := []string{"CMDTRACK_IMAGE=" + image}
	for name, from := range map[string]string{
		"CMDTRACK_POSTGRES_IMAGE": "CMDTRACK_TEST_POSTGRES_IMAGE",
		"CMDTRACK_RABBITMQ_IMAGE": "CMDTRACK_TEST_RABBITMQ_IMAGE",
		"GO_IMAGE":                "CMDTRACK_TEST_GO_IMAGE",
		"RUNTIME_IMAGE":           "CMDTRACK_TEST_RUNTIME_IMAGE",
	} {
		if v := os.Getenv(from); v != "" {
			env = append(env, name+"="+v)
		}
	}
	compose := func(timeout time.Duration, args ...string) (string, error) {
		return runDocker(timeout, env, append([]string{"compose", "-p", project, "-f", file, "-f", override}, args...)...)
	}
	mustCompose := func(timeout time.Duration, args ...string) string {
		t.Helper()
		out, err := compose(timeout, args...)
		require.NoErrorf(t, err, "docker compose %s:\n%s", strings.Join(args, " "), out)
		return out
	}
	down := func() (string, error) {
		return compose(3*time.Minute, "down", "--volumes", "--remove-orphans", "--timeout", "60")
	}
	t.Cleanup(func() {
		// After a failure midway; after a pass, a second down finds nothing.
		if out, err := down(); err != nil {
			t.Errorf("docker compose down: %v\n%s", err, out)
		}
		if out, err := runDocker(time.Minute, nil, "image", "rm", "-f", image); err != nil {
			t.Errorf("remove image %s: %v\n%s", image, err, out)
		}
	})
	defer func() {
		if t.Failed() {
			out, _ := compose(time.Minute, "logs", "--no-color")
			t.Logf("docker compose logs:\n%s", out)
		}
	}()

	start := time.Now()
	mustCompose(20*time.Minute, "up", "--build", "--detach")
	t.Logf("docker compose up --build: %s", time.Since(start).Round(time.Second))

	// The load generator publishes its stream and exits 0.
	type psEntry struct {
		Service  string
		State    string
		ExitCode int
	}
	serviceState := func(service string) psEntry {
		out, err := compose(time.Minute, "ps", "--all", "--format", "json", service)
		if err != nil {
			return psEntry{State: err.Error()}
		}
		var e psEntry
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if json.Unmarshal([]byte(line), &e) == nil && e.Service == service {
				return e
			}
		}
		return psEntry{State: "unknown: " + out}
	}
	var lg psEntry
	waitFor(t, 5*time.Minute, "loadgen finishes", func() (bool, string) {
		lg = serviceState("loadgen")
		return lg.State == "exited", fmt.Sprintf("%+v", lg)
	})
	require.Zero(t, lg.ExitCode, "loadgen's exit code")
	pub := parsePublish(t, mustCompose(time.Minute, "logs", "--no-color", "--no-log-prefix", "loadgen"))
	require.Equal(t, 2000, pub.commands)
	t.Logf("loadgen published %d messages (%d commands, %d distinct poison)", pub.messages, pub.commands, pub.poison)

	// Every command appears as a row, every distinct poison message as a
	// dead letter, and nothing is left unsettled.
	port := strings.TrimSpace(mustCompose(time.Minute, "port", "cmdtrack", strconv.Itoa(opsPort)))
	require.Regexp(t, `^127\.0\.0\.1:\d+$`, port, "the ops port is published on loopback")
	opsURL := "http://" + port
	requireDrained(t, opsURL, pub.messages)
	psql := func(query string) string {
		return strings.TrimSpace(mustCompose(time.Minute, "exec", "-T", "postgres", "psql", "-U", "cmdtrack", "-d", "cmdtrack", "-tAc", query))
	}
	require.Equal(t, "2000", psql("SELECT count(*) FROM device_commands"))
	require.Equal(t, strconv.Itoa(pub.poison), psql("SELECT count(*) FROM dead_letters"))
	status, body := httpGet(opsURL + "/readyz")
	require.Equalf(t, http.StatusOK, status, "/readyz: %s", body)

	// cmdtrack stops on its own within stop_grace_period.
	start = time.Now()
	mustCompose(2*time.Minute, "stop", "cmdtrack")
	took := time.Since(start)
	ct := serviceState("cmdtrack")
	require.Equal(t, "exited", ct.State)
	require.Zerof(t, ct.ExitCode, "cmdtrack's exit code after docker compose stop (took %s)", took)
	require.Less(t, took, stopTimeout)
	t.Logf("docker compose stop cmdtrack: %s", took.Round(time.Millisecond))
	logs := mustCompose(time.Minute, "logs", "--no-color", "--no-log-prefix", "cmdtrack")
	require.Contains(t, logs, "cmdtrack stopped cleanly")

	// down -v leaves nothing of the project behind.
	out, err := down()
	require.NoErrorf(t, err, "docker compose down:\n%s", out)
	filter := "label=com.docker.compose.project=" + project
	require.Empty(t, strings.TrimSpace(dockerCLI(t, time.Minute, nil, "ps", "--all", "--quiet", "--filter", filter)), "containers left")
	require.Empty(t, strings.TrimSpace(dockerCLI(t, time.Minute, nil, "network", "ls", "--quiet", "--filter", filter)), "networks left")
	require.Empty(t, strings.TrimSpace(dockerCLI(t, time.Minute, nil, "volume", "ls", "--quiet", "--filter", filter)), "volumes left")
}
