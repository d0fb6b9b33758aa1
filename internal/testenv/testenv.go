// Package testenv gives tests a real PostgreSQL and a real AMQP 1.0 broker.
//
// It uses, in this order: the services named by CMDTRACK_TEST_DATABASE_URL
// and CMDTRACK_TEST_AMQP_URL (`make test` provisions them on loopback with
// scripts/testenv.sh), or containers started through testcontainers-go where
// a Docker engine answers. With neither, tests fail: they never skip.
// IoTDA (iotdaauth.go) adds an IoTDA-shaped AMQPS endpoint on the broker:
// the one scripts/testenv.sh provisions, or the broker container's
// (iotdacontainer.go).
//
// The containers run the official images unless CMDTRACK_TEST_POSTGRES_IMAGE
// and CMDTRACK_TEST_RABBITMQ_IMAGE name others (`make test/docker` builds
// local stand-ins where no registry can be reached). Each is started once per
// test binary, and removed when its tests end by Main, which the TestMain of
// every package that uses them calls.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/go-amqp"
	"github.com/stretchr/testify/require"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
	"go.uber.org/goleak"

	"github.com/cmdtrack/cmdtrack/consumer"
	"github.com/cmdtrack/cmdtrack/store"
)

const (
	envDatabaseURL   = "CMDTRACK_TEST_DATABASE_URL"
	envAMQPURL       = "CMDTRACK_TEST_AMQP_URL"
	envPostgresImage = "CMDTRACK_TEST_POSTGRES_IMAGE"
	envRabbitMQImage = "CMDTRACK_TEST_RABBITMQ_IMAGE"
	howToRun         = "run the tests with `make test`, which provisions PostgreSQL and RabbitMQ on loopback, " +
		"or set " + envDatabaseURL + " and " + envAMQPURL + ", or run where a Docker engine answers"
)

// Credentials of the PostgreSQL container: those of the official image's
// superuser, with the password and database PostgresContainer sets.
const (
	PostgresUser     = "postgres"
	PostgresPassword = "test"
	PostgresDB       = "cmdtrack"
)

// PostgresContainer is the request for a PostgreSQL container: the image in
// CMDTRACK_TEST_POSTGRES_IMAGE, else postgres:15-alpine. Whatever the image,
// it must honour the official one's contract: POSTGRES_PASSWORD and
// POSTGRES_DB, port 5432, postgres flags as arguments, and the "ready" line
// logged twice on a first start (once by the init server).
func PostgresContainer() testcontainers.ContainerRequest {
	return testcontainers.ContainerRequest{
		Image:        imageFromEnv(envPostgresImage, "postgres:15-alpine"),
		Env:          map[string]string{"POSTGRES_PASSWORD": PostgresPassword, "POSTGRES_DB": PostgresDB},
		ExposedPorts: []string{"5432/tcp"},
		Cmd:          []string{"postgres", "-c", "fsync=off", "-c", "max_connections=300"},
		WaitingFor:   wait.ForLog("database system is ready to accept connections").WithOccurrence(2).WithStartupTimeout(2 * time.Minute),
	}
}

// BrokerContainer is the request for a RabbitMQ container with the AMQP 1.0
// plugin: the image in CMDTRACK_TEST_RABBITMQ_IMAGE, else rabbitmq:3.13.
// Whatever the image, it must have the official one's rabbitmq-plugins and
// docker-entrypoint.sh, let guest in from other hosts on port 5672, and log
// "Server startup complete" on stdout.
func BrokerContainer() testcontainers.ContainerRequest {
	return testcontainers.ContainerRequest{
		// 3.13 is the last line whose AMQP 1.0 plugin behaves like
		// Debian's 3.10 that `make test` installs.
		Image:        imageFromEnv(envRabbitMQImage, "rabbitmq:3.13"),
		ExposedPorts: []string{"5672/tcp"},
		Entrypoint:   []string{"sh", "-c", "rabbitmq-plugins enable --offline rabbitmq_amqp1_0 && exec docker-entrypoint.sh rabbitmq-server"},
		WaitingFor:   wait.ForLog("Server startup complete").WithStartupTimeout(2 * time.Minute),
	}
}

func imageFromEnv(env, official string) string {
	if v := os.Getenv(env); v != "" {
		return v
	}
	return official
}

// Each service is found or started once per test binary.
var (
	postgresURL = sync.OnceValues(func() (string, error) {
		return serviceURL(envDatabaseURL, PostgresContainer(), "5432/tcp",
			"postgres://"+PostgresUser+":"+PostgresPassword+"@%s/"+PostgresDB+"?sslmode=disable")
	})
	brokerURL = sync.OnceValues(func() (string, error) {
		if u := os.Getenv(envAMQPURL); u != "" {
			return u, nil
		}
		u, iot, err := brokerWithIoTDA()
		brokerIoTDA = iot
		return u, err
	})
	// brokerIoTDA is the IoTDA-shaped endpoint of the broker container, set
	// by brokerURL.
	brokerIoTDA *iotdaServer
)

// The containers this test binary started, removed by Main.
var (
	containersMu sync.Mutex
	mainRunning  bool
	containers   []testcontainers.Container
	// exits are run by Main after the containers are removed.
	exits []func() error
)

// atExit has Main run f when the tests end.
func atExit(f func() error) {
	containersMu.Lock()
	defer containersMu.Unlock()
	exits = append(exits, f)
}

// Main runs a package's tests, then removes the containers started for them,
// and exits. Every package whose tests use the services calls it, or M:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// testcontainers' reaper (Ryuk) would remove them too, but only where its
// image can be pulled; Main needs nothing.
func Main(m *testing.M) { os.Exit(M(m).Run()) }

// M is m, whose Run also removes the containers started for its tests (see
// Main), for a TestMain that checks more once they are gone:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(testenv.M(m), testenv.IgnoreReaper) }
func M(m *testing.M) interface{ Run() int } { return mainM{m} }

// IgnoreReaper is the goroutine goleak leaves alone in the tests that use
// the services: testcontainers' connection to its reaper (Ryuk), which lives
// as long as the test binary by design, where containers were started with
// the reaper on (make test/docker, where its image can be had). On loopback
// services (make test) there is none.
var IgnoreReaper = goleak.IgnoreTopFunction("github.com/testcontainers/testcontainers-go.(*Reaper).connect.func1")

type mainM struct{ m *testing.M }

func (mm mainM) Run() int {
	containersMu.Lock()
	mainRunning = true
	containersMu.Unlock()
	code := mm.m.Run()
	if err := removeContainers(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func removeContainers() error {
	containersMu.Lock()
	defer containersMu.Unlock()
	var errs []error
	for _, c := range containers {
		// Remove also deletes the anonymous volumes the images declare.
		if err := testcontainers.TerminateContainer(c, testcontainers.StopTimeout(10*time.Second)); err != nil {
			errs = append(errs, fmt.Errorf("remove container %s: %w", c.GetContainerID(), err))
		}
	}
	containers = nil
	for _, f := range exits {
		errs = append(errs, f())
	}
	exits = nil
	return errors.Join(errs...)
}

// needServices skips the test under -short (make test/unit, which runs only
// what needs no service); everywhere else a missing service fails the test.
func needServices(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL and an AMQP broker; run without -short (make test)")
	}
}

// DatabaseURL returns the URL of a PostgreSQL server for tests.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	needServices(t)
	u, err := postgresURL()
	require.NoError(t, err, "no PostgreSQL for tests: %s", howToRun)
	return u
}

// AMQPURL returns the URL of an AMQP 1.0 broker (RabbitMQ) for tests.
func AMQPURL(t testing.TB) string {
	t.Helper()
	needServices(t)
	u, err := brokerURL()
	require.NoError(t, err, "no AMQP broker for tests: %s", howToRun)
	return u
}

// serviceURL is the URL in the environment variable env, or that of a
// container started from req.
func serviceURL(env string, req testcontainers.ContainerRequest, port, urlFormat string) (string, error) {
	if u := os.Getenv(env); u != "" {
		return u, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := startContainer(ctx, req)
	if err != nil {
		return "", err
	}
	endpoint, err := c.PortEndpoint(ctx, port, "")
	if err != nil {
		return "", fmt.Errorf("%s port %s: %w", req.Image, port, err)
	}
	return fmt.Sprintf(urlFormat, endpoint), nil
}

// startContainer starts a container that Main removes; ctx bounds the start.
func startContainer(ctx context.Context, req testcontainers.ContainerRequest) (testcontainers.Container, error) {
	// Containers live as long as the test binary: only Main knows when that
	// ends, so without it they would be left behind.
	containersMu.Lock()
	defer containersMu.Unlock()
	if !mainRunning {
		return nil, errors.New("tests that start containers must run through testenv.Main, which removes them " +
			"afterwards: add `func TestMain(m *testing.M) { testenv.Main(m) }` to the package's tests")
	}
	c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{ContainerRequest: req, Started: true})
	if c != nil {
		// Also a container that failed to start, so that Main removes it.
		containers = append(containers, c)
	}
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", req.Image, err)
	}
	return c, nil
}

// Name returns a short random name with prefix, unique across test runs.
func Name(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Schema creates an empty schema for one test, migrated to the latest
// version, and drops it when the test ends. The returned URL connects with
// that schema as search_path, for running the real binary against it.
func Schema(t testing.TB) (st *store.Store, schema, url string) {
	t.Helper()
	st, schema, url = EmptySchema(t)
	require.NoError(t, st.Migrate(context.Background()))
	return st, schema, url
}

// EmptySchema is Schema without the migrations, for tests of a migration.
func EmptySchema(t testing.TB) (st *store.Store, schema, url string) {
	t.Helper()
	return emptySchemaAt(t, DatabaseURL(t))
}

// emptySchemaAt makes a schema of the test's own on the database at base,
// dropped when the test ends, and returns a store on it and base with it as
// search_path.
func emptySchemaAt(t testing.TB, base string) (st *store.Store, schema, url string) {
	t.Helper()
	ctx := context.Background()
	schema = Name("t_")
	admin, err := store.Open(ctx, base, store.Options{MaxConns: 1})
	require.NoError(t, err)
	defer admin.Close()
	_, err = admin.Pool().Exec(ctx, "CREATE SCHEMA "+schema)
	require.NoError(t, err)
	t.Cleanup(func() {
		admin, err := store.Open(context.Background(), base, store.Options{MaxConns: 1})
		if err == nil {
			_, _ = admin.Pool().Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			admin.Close()
		}
	})
	st, err = store.Open(ctx, base, store.Options{MaxConns: 8, Schema: schema})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return st, schema, base + sep + "search_path=" + schema
}

// Queue returns a fresh RabbitMQ queue address for one test. The queue is
// declared (durable) by attaching to it, so messages published before the
// worker starts are kept.
func Queue(t testing.TB) string {
	t.Helper()
	name := Name("cmdtrack-test-")
	addr := "/queue/" + name
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, detach := attach(ctx, t, addr)
	detach()
	t.Cleanup(func() {
		// Best effort: the queue is empty when a test passes.
		if path, err := exec.LookPath("rabbitmqctl"); err == nil && os.Getenv(envAMQPURL) != "" {
			_ = exec.Command(path, "delete_queue", name).Run()
		}
	})
	return addr
}

// attach attaches a receiver to addr (declaring the queue, for /queue/NAME)
// on a connection of its own; detach closes that connection, which detaches
// the link (RabbitMQ may never answer a detach of its own).
func attach(ctx context.Context, t testing.TB, addr string) (r *amqp.Receiver, detach func()) {
	t.Helper()
	conn, err := amqp.Dial(ctx, AMQPURL(t), nil)
	require.NoError(t, err)
	detach = func() { consumer.CloseConn(conn, 5*time.Second) }
	sess, err := conn.NewSession(ctx, nil)
	if err == nil {
		r, err = sess.NewReceiver(ctx, addr, consumer.ReceiverOptions(addr))
	}
	if err != nil {
		detach()
	}
	require.NoError(t, err)
	return r, detach
}

// Publisher sends test messages to a queue over one connection.
type Publisher struct {
	conn   *amqp.Conn
	sender *amqp.Sender
}

// NewPublisher opens a sender to addr; it is closed when the test ends.
func NewPublisher(t testing.TB, addr string) *Publisher {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := amqp.Dial(ctx, AMQPURL(t), nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	sess, err := conn.NewSession(ctx, nil)
	require.NoError(t, err)
	sender, err := sess.NewSender(ctx, addr, consumer.SenderOptions(addr))
	require.NoError(t, err)
	return &Publisher{conn: conn, sender: sender}
}

// Send publishes each body as a durable message with a Data section.
func (p *Publisher) Send(t testing.TB, bodies ...[]byte) {
	t.Helper()
	for _, b := range bodies {
		p.SendMessage(t, amqp.NewMessage(b))
	}
}

// SendAll publishes bodies in order of submission but with many sends in
// flight at once, which is how a platform pushes and much faster than one
// at a time.
func (p *Publisher) SendAll(t testing.TB, bodies [][]byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	work := make(chan []byte)
	errc := make(chan error, 32)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for b := range work {
				msg := amqp.NewMessage(b)
				msg.Header = &amqp.MessageHeader{Durable: true}
				if err := p.sender.Send(ctx, msg, nil); err != nil {
					select {
					case errc <- err:
					default:
					}
					cancel() // the rest fail fast; keep draining work
				}
			}
		})
	}
	for _, b := range bodies {
		work <- b
	}
	close(work)
	wg.Wait()
	close(errc)
	require.NoError(t, <-errc)
}

// SendMessage publishes msg as it is, made durable.
func (p *Publisher) SendMessage(t testing.TB, msg *amqp.Message) {
	t.Helper()
	if msg.Header == nil {
		msg.Header = &amqp.MessageHeader{}
	}
	msg.Header.Durable = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, p.sender.Send(ctx, msg, nil))
}

// RequireQueueEmpty fails the test if addr still holds a message, which
// would mean one was never settled.
func RequireQueueEmpty(t testing.TB, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, detach := attach(ctx, t, addr)
	defer detach()
	require.NoError(t, r.IssueCredit(1))
	rctx, rcancel := context.WithTimeout(ctx, time.Second)
	defer rcancel()
	msg, err := r.Receive(rctx, nil)
	if err == nil {
		t.Fatalf("queue %s still holds a message: %q", addr, msg.GetData())
	}
}
