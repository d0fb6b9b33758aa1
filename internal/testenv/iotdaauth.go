package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The IoTDA-shaped endpoint is RabbitMQ's AMQPS listener (scripts/testenv.sh
// configures it, or iotdacontainer.go in the broker container) whose users RabbitMQ checks through rabbitmq_auth_backend_http
// against the service below, which plays IoTDA's rule. RabbitMQ is configured
// with one fixed address for it, so one test binary at a time serves it.
const (
	envAMQPSURL      = "CMDTRACK_TEST_AMQPS_URL"
	envAMQPCAFile    = "CMDTRACK_TEST_AMQP_CA_FILE"
	envIoTDAAuthAddr = "CMDTRACK_TEST_IOTDA_AUTH_ADDR"
	howToRunIoTDA    = "run `eval \"$(scripts/testenv.sh up)\"` (as root; `make test` does it), which configures " +
		"RabbitMQ's AMQPS listener and HTTP auth backend and prints " + envAMQPSURL + ", " + envAMQPCAFile +
		" and " + envIoTDAAuthAddr

	// iotdaClockSkew is how far a username's timestamp may be from the
	// platform's clock, either way.
	iotdaClockSkew = 5 * time.Minute
	// sessionRecheck is how long after a login the AMQP 1.0 plugin's
	// password-less check of the same user (when a session begins) passes.
	sessionRecheck = time.Minute
	// authServiceBanner identifies the service on its /healthz, so that a
	// taken port can be told apart from another test binary's service.
	authServiceBanner = "cmdtrack IoTDA auth service"
)

// IoTDAEndpoint is an AMQPS endpoint that checks users as IoTDA does, with
// credentials registered for one test.
type IoTDAEndpoint struct {
	// URL is amqps://localhost:5671: a host name that the server
	// certificate must match.
	URL string
	// CAFile holds the test CA that issued the server certificate (PEM).
	CAFile     string
	AccessKey  string
	AccessCode string
	InstanceID string

	auth *iotdaAuth
}

// AuthCheck is one question RabbitMQ asked the auth service.
type AuthCheck struct {
	At time.Time
	// Path is what was asked: "user" (a login, or the AMQP 1.0 plugin's
	// re-check when a session begins), "vhost", "resource" or "topic".
	Path     string
	Username string
	// Timestamp is the username's timestamp (zero if it had none).
	Timestamp time.Time
	// Password tells a login from the password-less re-check.
	Password bool
	// Detail names the vhost or resource and permission asked for.
	Detail  string
	Allowed bool
	// Reason says why it was denied.
	Reason string
}

// Checks are the questions asked about this endpoint's access key so far,
// oldest first.
func (e *IoTDAEndpoint) Checks() []AuthCheck { return e.auth.checks(e.AccessKey) }

// Logins are the checks with a password: one per SASL login, oldest first.
func (e *IoTDAEndpoint) Logins() []AuthCheck {
	var out []AuthCheck
	for _, c := range e.Checks() {
		if c.Path == "user" && c.Password {
			out = append(out, c)
		}
	}
	return out
}

// Username is the SASL username IoTDA expects at time ts.
func (e *IoTDAEndpoint) Username(ts time.Time) string {
	return fmt.Sprintf("accessKey=%s|timestamp=%d|instanceId=%s", e.AccessKey, ts.UnixMilli(), e.InstanceID)
}

var iotdaServerOnce = sync.OnceValues(startIoTDAAuth)

// IoTDA returns the IoTDA-shaped endpoint with fresh credentials for this
// test, withdrawn when the test ends. The auth service starts with the first
// call in a test binary and serves until the binary exits.
func IoTDA(t testing.TB) *IoTDAEndpoint {
	t.Helper()
	needServices(t)
	svc, err := iotdaServerOnce()
	require.NoError(t, err)
	e := &IoTDAEndpoint{
		URL:        svc.url,
		CAFile:     svc.caFile,
		AccessKey:  Name("ak"),
		AccessCode: randomHex(32),
		InstanceID: randomHex(16),
		auth:       svc.auth,
	}
	svc.auth.register(e.AccessKey, e.AccessCode, e.InstanceID)
	t.Cleanup(func() { svc.auth.unregister(e.AccessKey) })
	return e
}

type iotdaServer struct {
	url, caFile string
	auth        *iotdaAuth
}

func startIoTDAAuth() (*iotdaServer, error) {
	amqpsURL, caFile, addr := os.Getenv(envAMQPSURL), os.Getenv(envAMQPCAFile), os.Getenv(envIoTDAAuthAddr)
	if amqpsURL == "" || caFile == "" || addr == "" {
		if os.Getenv(envAMQPURL) != "" {
			return nil, errNoContainerIoTDA
		}
		if _, err := brokerURL(); err != nil {
			return nil, err
		}
		return brokerIoTDA, nil
	}
	if _, err := os.Stat(caFile); err != nil {
		return nil, fmt.Errorf("test CA: %w; %s", err, howToRunIoTDA)
	}
	u, err := url.Parse(amqpsURL)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", envAMQPSURL, err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("AMQPS listener: %w; %s", err, howToRunIoTDA)
	}
	_ = conn.Close()

	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		if holder := probeAuthService(addr); holder != "" {
			return nil, fmt.Errorf("the IoTDA auth service address %s is taken by %s; RabbitMQ asks only that one, "+
				"so run the IoTDA tests once it is done", addr, holder)
		}
		return nil, fmt.Errorf("the IoTDA auth service address %s is taken by another program; "+
			"free it (RabbitMQ is configured to ask that address)", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("IoTDA auth service: %w", err)
	}
	auth := newIoTDAAuth(time.Now)
	srv := &http.Server{Handler: auth, ReadHeaderTimeout: 10 * time.Second}
	// It serves until the test binary exits: RabbitMQ may ask it at any time.
	go func() { _ = srv.Serve(ln) }()
	if _, err := warmUpIoTDA(amqpsURL, caFile); err != nil {
		return nil, fmt.Errorf("%w; %s", err, howToRunIoTDA)
	}
	return &iotdaServer{url: amqpsURL, caFile: caFile, auth: auth}, nil
}

// probeAuthService names the holder of addr if it is another test binary's
// auth service, else returns "".
func probeAuthService(addr string) string {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if !strings.HasPrefix(string(b), authServiceBanner) {
		return ""
	}
	return "another test binary (" + strings.TrimSpace(string(b)) + "), perhaps a `go test` run in another worktree"
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// iotdaAuth answers rabbitmq_auth_backend_http's questions the way IoTDA
// checks its AMQP clients.
type iotdaAuth struct {
	now func() time.Time

	mu sync.Mutex
	// creds maps an access key to its access code and instance id.
	creds map[string]iotdaCred
	// logins maps a username to its last accepted login with a password.
	logins map[string]time.Time
	// log holds every check, by access key.
	log map[string][]AuthCheck
}

type iotdaCred struct{ code, instanceID string }

func newIoTDAAuth(now func() time.Time) *iotdaAuth {
	return &iotdaAuth{now: now, creds: map[string]iotdaCred{}, logins: map[string]time.Time{}, log: map[string][]AuthCheck{}}
}

func (a *iotdaAuth) register(accessKey, code, instanceID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.creds[accessKey] = iotdaCred{code: code, instanceID: instanceID}
}

// unregister withdraws the credentials, so a worker a test left behind can
// no longer log in, and forgets their checks.
func (a *iotdaAuth) unregister(accessKey string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.creds, accessKey)
	delete(a.log, accessKey)
	for u := range a.logins {
		if ak, _, _, err := parseIoTDAUsername(u); err == nil && ak == accessKey {
			delete(a.logins, u)
		}
	}
}

func (a *iotdaAuth) checks(accessKey string) []AuthCheck {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]AuthCheck(nil), a.log[accessKey]...)
}

var thirteenDigits = regexp.MustCompile(`^[0-9]{13}$`)

// parseIoTDAUsername splits accessKey=AK|timestamp=<13-digit ms>|instanceId=ID.
func parseIoTDAUsername(u string) (accessKey string, ts time.Time, instanceID string, err error) {
	fields := strings.Split(u, "|")
	if len(fields) != 3 {
		return "", time.Time{}, "", errors.New("username is not of the form accessKey=AK|timestamp=MS|instanceId=ID")
	}
	vals := map[string]string{}
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok || v == "" {
			return "", time.Time{}, "", fmt.Errorf("username field %q is not key=value", f)
		}
		vals[k] = v
	}
	accessKey, raw, instanceID := vals["accessKey"], vals["timestamp"], vals["instanceId"]
	if accessKey == "" || raw == "" || instanceID == "" {
		return "", time.Time{}, "", errors.New("username lacks accessKey, timestamp or instanceId")
	}
	if !thirteenDigits.MatchString(raw) {
		return accessKey, time.Time{}, instanceID, fmt.Errorf("timestamp %q is not 13 digits of milliseconds", raw)
	}
	ms, _ := strconv.ParseInt(raw, 10, 64)
	return accessKey, time.UnixMilli(ms), instanceID, nil
}

func (a *iotdaAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, "/auth/")
	if !ok {
		if r.URL.Path == "/healthz" {
			fmt.Fprintf(w, "%s, pid %d\n", authServiceBanner, os.Getpid())
			return
		}
		http.NotFound(w, r)
		return
	}
	// GET puts the parameters in the query, POST in a form: r.Form holds both.
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	username := r.Form.Get("username")
	_, hasPassword := r.Form["password"]
	c := AuthCheck{At: a.now(), Path: path, Username: username, Password: path == "user" && hasPassword}
	accessKey, ts, instanceID, perr := parseIoTDAUsername(username)
	c.Timestamp = ts

	a.mu.Lock()
	cred, known := a.creds[accessKey]
	switch {
	case perr != nil:
		c.Reason = perr.Error()
	case !known:
		c.Reason = "unknown access key"
	case instanceID != cred.instanceID:
		c.Reason = "wrong instance id"
	default:
		a.decide(&c, r, cred)
	}
	if accessKey != "" {
		a.log[accessKey] = append(a.log[accessKey], c)
	}
	a.mu.Unlock()

	// rabbitmq_auth_backend_http wants 200 and a bare word; any other status
	// is an error to it rather than a refusal.
	if c.Allowed {
		_, _ = io.WriteString(w, "allow")
	} else {
		_, _ = io.WriteString(w, "deny")
	}
}

// decide fills c.Allowed and c.Reason for a well-formed username with a
// registered access key and its instance id. a.mu is held.
func (a *iotdaAuth) decide(c *AuthCheck, r *http.Request, cred iotdaCred) {
	lastLogin, loggedIn := a.logins[c.Username]
	switch c.Path {
	case "user":
		if !c.Password {
			// The AMQP 1.0 plugin opens an internal connection for each
			// session, which checks the user again without a password.
			if !loggedIn || c.At.Sub(lastLogin) > sessionRecheck {
				c.Reason = "no password, and no recent login with this username"
				return
			}
			c.Allowed = true
			return
		}
		if r.Form.Get("password") != cred.code {
			c.Reason = "wrong access code"
			return
		}
		if skew := c.At.Sub(c.Timestamp); skew > iotdaClockSkew || skew < -iotdaClockSkew {
			c.Reason = fmt.Sprintf("timestamp %s is %s away from the server's clock", c.Timestamp.Format(time.RFC3339Nano), skew.Round(time.Millisecond))
			return
		}
		a.logins[c.Username] = c.At
		c.Allowed = true
	case "vhost":
		c.Detail = r.Form.Get("vhost")
		switch {
		case !loggedIn:
			c.Reason = "not logged in"
		case c.Detail != "/":
			// IoTDA's Open hostname "default" maps to "/" (amqp1_0.default_vhost).
			c.Reason = "only vhost / (Open hostname \"default\")"
		default:
			c.Allowed = true
		}
	case "resource":
		kind, perm := r.Form.Get("resource"), r.Form.Get("permission")
		c.Detail = kind + " " + r.Form.Get("name") + " " + perm
		switch {
		case !loggedIn:
			c.Reason = "not logged in"
		case kind != "queue" || (perm != "configure" && perm != "read"):
			// Like IoTDA, clients only receive: declaring and consuming a
			// queue is all they may do.
			c.Reason = "clients may only declare and consume queues"
		default:
			c.Allowed = true
		}
	default:
		c.Detail = r.Form.Get("name")
		c.Reason = "not allowed"
	}
}
