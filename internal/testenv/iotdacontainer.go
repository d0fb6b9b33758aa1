package testenv

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/testcontainers/testcontainers-go"
)

// On the container path the broker container carries the IoTDA-shaped
// endpoint too, as scripts/testenv.sh sets it up on loopback: an AMQPS
// listener with a certificate from a test CA made for this test binary, and
// rabbitmq_auth_backend_http asking this binary's auth service, which listens
// on the Docker bridge's gateway address, where the container reaches the
// host. Each test binary has its own broker container, so its own service.
const (
	amqpsPort      = "5671/tcp"
	certsDir       = "/etc/rabbitmq/certs"
	iotdaConfFile  = "/etc/rabbitmq/conf.d/30-iotda.conf"
	brokerPlugins  = "rabbitmq_amqp1_0 rabbitmq_auth_backend_http"
	containerIoTDA = "the broker container's AMQPS listener"
)

// brokerWithIoTDA starts the broker container with the IoTDA-shaped
// endpoint and returns the broker's plain AMQP URL (guest) and the endpoint.
func brokerWithIoTDA() (string, *iotdaServer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	ln, err := listenOnDockerGateway(ctx)
	if err != nil {
		return "", nil, err
	}
	auth := newIoTDAAuth(time.Now)
	srv := &http.Server{Handler: auth, ReadHeaderTimeout: 10 * time.Second}
	// It serves until the tests end (RabbitMQ may ask it at any time), and
	// is closed after the containers are removed, so that goleak's check in
	// the packages' TestMain finds its goroutine gone.
	go func() { _ = srv.Serve(ln) }()
	atExit(srv.Close)

	tls, err := newTestTLS()
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "cmdtrack-test-ca-")
	if err != nil {
		return "", nil, err
	}
	atExit(func() error { return os.RemoveAll(dir) })
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, tls.caPEM, 0o644); err != nil {
		return "", nil, err
	}

	req := BrokerContainer()
	req.ExposedPorts = append(req.ExposedPorts, amqpsPort)
	req.Entrypoint = []string{"sh", "-c", "rabbitmq-plugins enable --offline " + brokerPlugins + " && exec docker-entrypoint.sh rabbitmq-server"}
	// The node runs as rabbitmq: the files must be readable by it.
	file := func(path string, b []byte) testcontainers.ContainerFile {
		return testcontainers.ContainerFile{Reader: bytes.NewReader(b), ContainerFilePath: path, FileMode: 0o644}
	}
	req.Files = append(req.Files,
		file(iotdaConfFile, []byte(iotdaBrokerConf("http://"+ln.Addr().String()+"/auth"))),
		file(certsDir+"/ca.pem", tls.caPEM),
		file(certsDir+"/server.pem", tls.certPEM),
		file(certsDir+"/server.key", tls.keyPEM),
	)
	c, err := startContainer(ctx, req)
	if err != nil {
		return "", nil, err
	}
	plain, err := c.PortEndpoint(ctx, "5672/tcp", "")
	if err != nil {
		return "", nil, fmt.Errorf("%s port 5672: %w", req.Image, err)
	}
	tlsPort, err := c.MappedPort(ctx, amqpsPort)
	if err != nil {
		return "", nil, fmt.Errorf("%s port 5671: %w", req.Image, err)
	}
	// localhost, not 127.0.0.1: like IoTDA's endpoint, a host name that the
	// certificate must match.
	iot := &iotdaServer{url: "amqps://localhost:" + tlsPort.Port(), caFile: caFile, auth: auth}
	if _, err := warmUpIoTDA(iot.url, caFile); err != nil {
		return "", nil, fmt.Errorf("%s: %w", containerIoTDA, err)
	}
	return "amqp://guest:guest@" + plain + "/", iot, nil
}

// listenOnDockerGateway listens on a free port of the address at which
// containers on the default network reach the host, which only works where
// the engine runs on this machine.
func listenOnDockerGateway(ctx context.Context) (net.Listener, error) {
	p, err := testcontainers.NewDockerProvider()
	if err != nil {
		return nil, fmt.Errorf("docker provider: %w", err)
	}
	defer p.Close()
	gw, err := p.GetGatewayIP(ctx)
	if err != nil {
		return nil, fmt.Errorf("docker bridge gateway, where the broker container asks the IoTDA auth service: %w", err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(gw, "0"))
	if err != nil {
		return nil, fmt.Errorf("IoTDA auth service on the docker bridge gateway %s (the Docker engine must run on this machine): %w", gw, err)
	}
	return ln, nil
}

// iotdaBrokerConf is scripts/testenv.sh's configuration of the endpoint,
// inside the container.
func iotdaBrokerConf(authURL string) string {
	return `listeners.ssl.default = 5671
ssl_options.cacertfile = ` + certsDir + `/ca.pem
ssl_options.certfile = ` + certsDir + `/server.pem
ssl_options.keyfile = ` + certsDir + `/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
auth_backends.1 = internal
auth_backends.2 = http
auth_http.http_method = get
auth_http.user_path = ` + authURL + `/user
auth_http.vhost_path = ` + authURL + `/vhost
auth_http.resource_path = ` + authURL + `/resource
auth_http.topic_path = ` + authURL + `/topic
auth_http.connection_timeout = 2000
auth_http.request_timeout = 5000
amqp1_0.default_vhost = /
`
}

type testTLS struct{ caPEM, certPEM, keyPEM []byte }

// newTestTLS makes a CA and a server certificate it issued for localhost and
// 127.0.0.1, valid for a day: one test binary's worth.
func newTestTLS() (*testTLS, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now().Add(-time.Hour)
	ca := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "cmdtrack test CA"},
		NotBefore:             now,
		NotAfter:              now.Add(25 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err = x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leaf := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now,
		NotAfter:     now.Add(25 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &testTLS{
		caPEM:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		// Erlang's ssl reads SEC 1 ("EC PRIVATE KEY") as openssl writes it.
		keyPEM: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// errNoContainerIoTDA is returned when the loopback broker is used without
// the endpoint scripts/testenv.sh provisions beside it.
var errNoContainerIoTDA = errors.New("no IoTDA-shaped endpoint for tests: " + howToRunIoTDA +
	"; or leave " + envAMQPURL + " unset where a Docker engine answers, and " + containerIoTDA + " serves it")
