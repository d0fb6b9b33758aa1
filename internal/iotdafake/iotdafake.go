// Package iotdafake plays IoTDA's application API for tests: an HTTPS
// server, with a certificate from a test CA made for it, that answers
// ShowAsyncDeviceCommand (GET /v5/iot/{project}/devices/{device}/async-commands/{command})
// and the downlinks of MQTT devices (downlinks.go: CreateMessage,
// ShowDeviceMessage, CreateCommand, UpdateProperties) from a table the test
// fills, checks the IAM token, and counts the calls per command (or per
// key, for the downlinks).
package iotdafake

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Project and Token are what the server expects: the project id in the path
// and the IAM token in X-Auth-Token.
const (
	Project = "0123456789abcdef0123456789abcdef"
	Token   = "iam-token-for-tests"
)

// Answer is one reply of the server. The zero Status is 200.
type Answer struct {
	Status int
	Body   string
	Header map[string]string
	// Delay holds the reply back (a slow or hung platform); the request's
	// end cuts it short.
	Delay time.Duration
	// Hangup closes the connection without a reply: a transport error.
	Hangup bool
}

// Server is the fake API. Its methods are safe for concurrent use.
type Server struct {
	// URL is the endpoint (https://127.0.0.1:PORT).
	URL string
	// CAFile is the PEM file of the CA that signed the server's
	// certificate; clients must trust it (CMDTRACK_API_CA_FILE).
	CAFile string
	// CAPool holds the same CA, for clients built in the test.
	CAPool *x509.CertPool

	srv *httptest.Server

	mu       sync.Mutex
	answers  map[string][]Answer // by command id; the last one repeats
	calls    map[string]int
	times    map[string][]time.Time
	devices  map[string]string // command id -> device id asked for
	bodies   map[string][]string
	onCall   func(commandID string)
	throttle int // answer the next n calls with 429
}

// Start starts a server for the test; it stops when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	caPEM, cert, pool := testCA(t)
	s := &Server{CAPool: pool, answers: map[string][]Answer{}, calls: map[string]int{}, times: map[string][]time.Time{},
		devices: map[string]string{}, bodies: map[string][]string{}}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	// Handshakes refused by clients that do not trust the CA are expected.
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	s.URL = s.srv.URL
	s.CAFile = filepath.Join(t.TempDir(), "iotda-ca.pem")
	require.NoError(t, os.WriteFile(s.CAFile, caPEM, 0o600))
	return s
}

// Command is a command record as ShowAsyncDeviceCommand returns it.
type Command struct {
	DeviceID      string          `json:"device_id"`
	CommandID     string          `json:"command_id"`
	ServiceID     string          `json:"service_id,omitempty"`
	CommandName   string          `json:"command_name,omitempty"`
	Paras         json.RawMessage `json:"paras,omitempty"`
	ExpireTime    *int            `json:"expire_time,omitempty"`
	Status        string          `json:"status"`
	Result        json.RawMessage `json:"result,omitempty"`
	CreatedTime   string          `json:"created_time,omitempty"`
	SentTime      string          `json:"sent_time,omitempty"`
	DeliveredTime string          `json:"delivered_time,omitempty"`
	ResponseTime  string          `json:"response_time,omitempty"`
	SendStrategy  string          `json:"send_strategy,omitempty"`
}

// Set makes the server answer c for its command id.
func (s *Server) Set(c Command) {
	b, err := json.Marshal(c)
	if err != nil {
		panic(err) // a Command always marshals
	}
	s.SetAnswers(c.CommandID, Answer{Body: string(b)})
}

// SetAnswers makes the server answer the calls for commandID with answers in
// turn, repeating the last.
func (s *Server) SetAnswers(commandID string, answers ...Answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers[commandID] = answers
}

// Throttle answers the next n calls, whatever they ask, with 429 and
// Retry-After: 1.
func (s *Server) Throttle(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttle = n
}

// OnCall runs fn with the command id (a downlink's key) at each call, before the answer is
// written: what happens meanwhile happens "during" the call.
func (s *Server) OnCall(fn func(commandID string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onCall = fn
}

// Calls is how many times commandID was asked for.
func (s *Server) Calls(commandID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[commandID]
}

// CallTimes are when commandID was asked for.
func (s *Server) CallTimes(commandID string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.times[commandID]...)
}

// AllCalls is the number of calls per command id.
func (s *Server) AllCalls() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.calls))
	for k, v := range s.calls {
		out[k] = v
	}
	return out
}

// Device is the device id the last call for commandID named.
func (s *Server) Device(commandID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.devices[commandID]
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	// /v5/iot/{project}/devices/{device}/async-commands/{command}, or a
	// downlink's path (route).
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	rt, ok := route(r.Method, parts)
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error_code":"APIG.0101","error_msg":"The API does not exist or has not been published in the environment"}`)
		return
	}
	device, id := parts[4], rt.key
	body, _ := io.ReadAll(r.Body)

	// Every call counts, refused ones too: they spend the quota as well.
	s.mu.Lock()
	s.calls[id]++
	s.times[id] = append(s.times[id], time.Now())
	s.devices[id] = device
	s.bodies[id] = append(s.bodies[id], string(body))
	s.mu.Unlock()
	if r.Header.Get("X-Auth-Token") != Token {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error_code":"APIG.0301","error_msg":"Incorrect IAM authentication information: verify aksk signature fail"}`)
		return
	}
	if parts[2] != Project {
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"error_code":"IOTDA.000004","error_msg":"Insufficient permission."}`)
		return
	}

	s.mu.Lock()
	onCall := s.onCall
	throttled := s.throttle > 0
	if throttled {
		s.throttle--
	}
	var a Answer
	answers, known := s.answers[id]
	if known {
		a = answers[0]
		if len(answers) > 1 {
			s.answers[id] = answers[1:]
		}
	}
	s.mu.Unlock()

	if onCall != nil {
		onCall(id)
	}
	switch {
	case throttled:
		a = Answer{Status: http.StatusTooManyRequests, Header: map[string]string{"Retry-After": "1"},
			Body: `{"error_code":"APIG.0308","error_msg":"The throttling threshold has been reached: policy user over ratelimit,limit:5,time:1 second"}`}
	case !known && rt.answer != nil:
		a = rt.answer(body)
	case !known:
		a = Answer{Status: http.StatusNotFound, Body: `{"error_code":"IOTDA.014016","error_msg":"The command does not exist."}`}
	}
	if a.Delay > 0 {
		select {
		case <-time.After(a.Delay):
		case <-r.Context().Done():
			// Never an answer: returning would have net/http send an empty
			// 200, which a client still listening (its connection was not
			// what ended the request) read as the platform's answer (once
			// in CI-like load: TestSendSyncRecordsEveryOutcome's dev-late
			// recorded ERROR, "unexpected end of JSON input", for TIMEOUT).
			a.Hangup = true
		}
	}
	if a.Hangup {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
		}
		return
	}
	for k, v := range a.Header {
		w.Header().Set(k, v)
	}
	w.Header().Set("X-Request-Id", "fake-"+id)
	if a.Status != 0 {
		w.WriteHeader(a.Status)
	}
	_, _ = io.WriteString(w, a.Body)
}

// testCA makes a CA and a certificate it signs for 127.0.0.1 and localhost.
func testCA(t testing.TB) (caPEM []byte, serverCert tls.Certificate, pool *x509.CertPool) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "cmdtrack test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "iotda.test"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}
