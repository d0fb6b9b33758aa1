package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/Azure/go-amqp"
)

// warmUpIoTDA logs in once with credentials nobody registered and waits for
// the refusal. RabbitMQ's first login through the HTTP auth backend pays for
// starting its HTTP client and TLS, which on a busy machine took longer than
// a worker's idle timeout (8 s): the first test to dial then saw "cannot
// connect" before the refusal it expected. "Server startup complete" does
// not cover that path; an answered login does.
func warmUpIoTDA(rawURL, caFile string) (time.Duration, error) {
	start := time.Now()
	u, err := url.Parse(rawURL)
	if err != nil {
		return 0, err
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return 0, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return 0, fmt.Errorf("%s: no certificate", caFile)
	}
	opts := &amqp.ConnOptions{
		TLSConfig: &tls.Config{RootCAs: pool, ServerName: u.Hostname(), MinVersion: tls.VersionTLS12},
		SASLType: amqp.SASLTypePlain(fmt.Sprintf("accessKey=warm-up|timestamp=%d|instanceId=warm-up",
			time.Now().UnixMilli()), "warm-up"),
		HostName: "default",
	}
	deadline := start.Add(3 * time.Minute)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		conn, err := amqp.Dial(ctx, "amqps://"+u.Host, opts)
		cancel()
		if err == nil {
			_ = conn.Close()
			return time.Since(start), errors.New("the IoTDA-shaped endpoint let unregistered credentials in")
		}
		if strings.Contains(err.Error(), "auth failed") {
			return time.Since(start), nil
		}
		last = err
		time.Sleep(200 * time.Millisecond) // a retry pace, not a wait for an event
	}
	return time.Since(start), fmt.Errorf("%s never answered a login within 3 minutes: %w", rawURL, last)
}
