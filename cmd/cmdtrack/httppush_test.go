package main_test

// The HTTP(S) push receiver, with a token and with client certificates.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/testenv"
)

// pushToken is the receiver's token in these tests: long enough to be
// accepted (16 characters at least).
const pushToken = "s3cret-push-token-0123"

// TestHTTPPush runs the HTTPS push receiver with a token: v5 and legacy
// notifications are stored and answered 200 after the commit, malformed ones
// dead-lettered and answered 400, oversized ones 413, and requests without
// the token 401.
func TestHTTPPush(t *testing.T) {
	t.Parallel()
	f := setup(t)
	certFile, keyFile, pool := selfSignedCert(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	w := testenv.StartWorker(t, f.env("CMDTRACK_HTTP_ADDR", addr, "CMDTRACK_HTTP_TLS_CERT", certFile,
		"CMDTRACK_HTTP_TLS_KEY", keyFile, "CMDTRACK_HTTP_TOKEN", pushToken, "CMDTRACK_MAX_BODY_BYTES", "4096"))
	w.WaitReady(30 * time.Second)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	post := func(body string, token string) (int, string) {
		req, err := http.NewRequest(http.MethodPost, "https://"+addr+"/v1.0.0/messageReceiver/cmd", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	seed := func(name string) string {
		b, err := os.ReadFile(filepath.Join("..", "..", "notification", "testdata", name))
		require.NoError(t, err)
		return string(b)
	}
	code, _ := post(seed("seed000.json"), pushToken)
	require.Equal(t, 200, code)
	code, _ = post(seed("seed001_legacy_cmd_status.json"), pushToken)
	require.Equal(t, 200, code)
	code, _ = post(`{"notifyType":"messageConfirm","header":{"requestId":"108a9c71462a48e09426e06e844d47ba","from":"/devices/92d3f8da-200a-4143-8d0d-591a7e11de6c","to":"app","status":"executed","timestamp":"20261122T101010Z"},"body":{}}`, pushToken)
	require.Equal(t, 200, code)
	code, body := post(`{"resource":"device.command.status","event":"update"`, pushToken)
	require.Equal(t, 400, code)
	require.Contains(t, body, "invalid_json")
	code, _ = post(`{"pad":"`+strings.Repeat("x", 5000)+`"}`, pushToken)
	require.Equal(t, 413, code)
	code, _ = post(seed("seed000.json"), "")
	require.Equal(t, 401, code)
	code, _ = post(seed("seed000.json"), "wrong")
	require.Equal(t, 401, code)
	resp, err := client.Get("https://" + addr + "/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 405, resp.StatusCode)

	var status string
	require.NoError(t, f.st.Pool().QueryRow(context.Background(), `SELECT status FROM device_commands WHERE command_id = 'id'`).Scan(&status))
	require.Equal(t, "SUCCESSFUL", status)
	// The v1 callback said SENT, the later acknowledgment "executed".
	require.NoError(t, f.st.Pool().QueryRow(context.Background(),
		`SELECT status FROM device_commands WHERE command_id = '108a9c71462a48e09426e06e844d47ba'`).Scan(&status))
	require.Equal(t, "SUCCESSFUL", status)
	require.Equal(t, 3, f.count(t, `SELECT count(*) FROM device_command_events WHERE source = 'http'`))
	require.Equal(t, 1, f.count(t, `SELECT count(*) FROM dead_letters WHERE source = 'http'`))
	stopCleanly(t, w)
	require.NotContains(t, w.Output(), pushToken)
}

func selfSignedCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestHTTPPushClientCertificate requires client certificates signed by a
// configured CA: a client without one cannot even complete the handshake.
func TestHTTPPushClientCertificate(t *testing.T) {
	t.Parallel()
	f := setup(t)
	certFile, keyFile, serverPool := selfSignedCert(t)
	clientCert, clientKey, _ := selfSignedCert(t) // its own CA: the client certificate is self-signed
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	w := testenv.StartWorker(t, f.env("CMDTRACK_HTTP_ADDR", addr, "CMDTRACK_HTTP_TLS_CERT", certFile,
		"CMDTRACK_HTTP_TLS_KEY", keyFile, "CMDTRACK_HTTP_CLIENT_CA", clientCert))
	w.WaitReady(30 * time.Second)
	body, err := os.ReadFile(filepath.Join("..", "..", "notification", "testdata", "seed000.json"))
	require.NoError(t, err)

	anonymous := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: serverPool}}}
	_, err = anonymous.Post("https://"+addr+"/", "application/json", strings.NewReader(string(body)))
	require.Error(t, err, "a client without a certificate must be refused")

	pair, err := tls.LoadX509KeyPair(clientCert, clientKey)
	require.NoError(t, err)
	withCert := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: serverPool, Certificates: []tls.Certificate{pair}}}}
	resp, err := withCert.Post("https://"+addr+"/", "application/json", strings.NewReader(string(body)))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, 1, f.count(t, `SELECT count(*) FROM device_commands WHERE command_id = 'id'`))
	stopCleanly(t, w)
}

// TestHTTPSPushNotLockedOut is issue 26's lockout over HTTPS, through the
// daemon: the connections to the receiver (CMDTRACK_HTTP_MAX_CONNS) filled
// by clients without the token, each answered 401 and then idle on
// keep-alive, and then by idle authenticated clients; each time a genuine
// push still gets its answer.
func TestHTTPSPushNotLockedOut(t *testing.T) {
	t.Parallel()
	f := setup(t)
	certFile, keyFile, pool := selfSignedCert(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	const maxConns = 4
	w := testenv.StartWorker(t, f.env("CMDTRACK_HTTP_ADDR", addr, "CMDTRACK_HTTP_TLS_CERT", certFile,
		"CMDTRACK_HTTP_TLS_KEY", keyFile, "CMDTRACK_HTTP_TOKEN", pushToken,
		"CMDTRACK_HTTP_MAX_CONNS", fmt.Sprint(maxConns), "CMDTRACK_HTTP_MAX_IN_FLIGHT", fmt.Sprint(maxConns)))
	w.WaitReady(30 * time.Second)
	tlsConfig := &tls.Config{RootCAs: pool}
	body, err := os.ReadFile(filepath.Join("..", "..", "notification", "testdata", "seed000.json"))
	require.NoError(t, err)

	// keptAlive pushes once on a connection of its own and leaves it open.
	keptAlive := func(token string) (net.Conn, int) {
		c, err := tls.Dial("tcp", addr, tlsConfig)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		req, err := http.NewRequest(http.MethodPost, "https://"+addr+"/", strings.NewReader(string(body)))
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		require.NoError(t, req.Write(c))
		require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return c, resp.StatusCode
	}
	// A genuine push, on a connection of its own. 30 s is generous: it is
	// answered in milliseconds once it has a connection; past it, it is
	// starved (IoTDA gives up after 15 s).
	genuine := func() int {
		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig, DisableKeepAlives: true}}
		req, err := http.NewRequest(http.MethodPost, "https://"+addr+"/", strings.NewReader(string(body)))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+pushToken)
		resp, err := client.Do(req)
		require.NoError(t, err, "a genuine push got no answer while the connections were at the cap")
		resp.Body.Close()
		return resp.StatusCode
	}

	for range maxConns {
		_, code := keptAlive("")
		require.Equal(t, http.StatusUnauthorized, code)
	}
	require.Equal(t, http.StatusOK, genuine(), "connections of refused clients")
	for range maxConns {
		_, code := keptAlive(pushToken)
		require.Equal(t, http.StatusOK, code)
	}
	require.Equal(t, http.StatusOK, genuine(), "idle authenticated connections")
	stopCleanly(t, w)
}
