package consumer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/go-amqp"
	"golang.org/x/sync/errgroup"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/backoff"
	"github.com/cmdtrack/cmdtrack/pipeline"
)

// BrokerConfig says where the queue is and how to hold the connection.
type BrokerConfig struct {
	// URL is amqp://[user:pass@]host[:port] for a local broker or
	// amqps://host:5671 for IoTDA.
	URL    string
	Queues []string

	// IoTDA credentials. When AccessKey is set the SASL PLAIN username is
	// built per dial as IoTDA wants it, and the Open hostname is "default".
	AccessKey  string
	AccessCode string
	InstanceID string
	// CAFile adds trusted roots for amqps:// (the system roots stay trusted).
	CAFile string

	// Credit bounds the unsettled messages per receiver link.
	Credit int
	// Limits are what a message may be (see ingest.Classify).
	Limits      ingest.Limits
	IdleTimeout time.Duration
	DialTimeout time.Duration
	// Reconnect backoff: doubles from ReconnectMin up to ReconnectMax, with
	// jitter, after every failed attempt.
	ReconnectMin time.Duration
	ReconnectMax time.Duration
}

// Broker is the pipeline's AMQP source: it holds the connection and one
// receiver link per queue, re-dialling whenever the connection, the session
// or a link dies, and hands every link to the pipeline as a Receiver.
type Broker struct {
	cfg    BrokerConfig
	log    *slog.Logger
	m      *Metrics
	tlsCfg *tls.Config

	connected atomic.Bool

	mu   sync.Mutex
	conn *amqp.Conn // the live connection, if any; closed by Close
}

// NewBroker validates cfg. It does not dial.
func NewBroker(cfg BrokerConfig, log *slog.Logger, m *Metrics) (*Broker, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, errors.New("invalid AMQP URL")
	}
	if u.Scheme != "amqp" && u.Scheme != "amqps" {
		return nil, fmt.Errorf("AMQP URL scheme %q: want amqp or amqps", u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, errors.New("AMQP URL has no host")
	}
	if len(cfg.Queues) == 0 {
		return nil, errors.New("no queue to consume")
	}
	if cfg.AccessKey != "" && (cfg.AccessCode == "" || cfg.InstanceID == "") {
		return nil, errors.New("IoTDA access key set without access code or instance id")
	}
	b := &Broker{cfg: cfg, log: log, m: m}
	if u.Scheme == "amqps" {
		b.tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.Hostname()}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("read CA file: %w", err)
			}
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("CA file %s holds no PEM certificate", cfg.CAFile)
			}
			b.tlsCfg.RootCAs = pool
		}
	}
	if b.cfg.Credit < 2 {
		b.cfg.Credit = 2
	}
	return b, nil
}

// Connected reports whether receiver links are attached right now.
func (b *Broker) Connected() bool { return b.connected.Load() }

// Log lines an operator (and the tests) look for: one per outage, not per
// attempt.
const (
	LogConnected     = "connected to broker"
	LogConnLost      = "broker connection lost; reconnecting"
	LogConnRestored  = "broker connection restored"
	LogStillDown     = "broker still unreachable"
	LogReconnectFail = "broker reconnect failed"
)

// Run keeps receiver links attached until ctx ends, re-dialling with backoff
// on any failure, and runs consume on each link (one goroutine per link) for
// as long as its connection lives. It returns nil when ctx ends. The
// connection is left open then, so that messages in hand can still be
// settled: call Close once they are.
func (b *Broker) Run(ctx context.Context, consume func(context.Context, pipeline.Receiver) error) error {
	var (
		attempt   int
		downSince time.Time
	)
	for {
		err := b.session(ctx, consume, func() {
			if !downSince.IsZero() {
				b.log.Info(LogConnRestored, "down_for", time.Since(downSince).Round(time.Millisecond), "attempts", attempt)
			} else {
				b.log.Info(LogConnected, "queues", b.cfg.Queues)
			}
			attempt, downSince = 0, time.Time{}
		})
		if ctx.Err() != nil {
			return nil
		}
		b.m.reconnects.Inc()
		attempt++
		if downSince.IsZero() {
			downSince = time.Now()
			b.m.outages.Inc()
			b.log.Warn(LogConnLost, "err", err)
		} else {
			b.log.Debug(LogReconnectFail, "attempt", attempt, "err", err)
			if attempt%20 == 0 {
				b.log.Warn(LogStillDown, "down_for", time.Since(downSince).Round(time.Second), "attempts", attempt, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff.Delay(attempt, b.cfg.ReconnectMin, b.cfg.ReconnectMax)):
		}
	}
}

// session dials, attaches one receiver per queue and receives until ctx ends
// (returning nil, connection left open) or something fails (returning the
// error, connection closed).
func (b *Broker) session(ctx context.Context, consume func(context.Context, pipeline.Receiver) error, onUp func()) (err error) {
	conn, err := b.dial(ctx)
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.conn = conn
	b.mu.Unlock()
	defer func() {
		if err != nil {
			b.closeConn(conn)
		}
	}()

	// IoTDA closes a connection that has no receiver 15 s after it opens, so
	// attaching is bounded well inside that.
	attachCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sess, err := conn.NewSession(attachCtx, nil)
	if err != nil {
		return fmt.Errorf("begin session: %w", err)
	}
	receivers := make([]*amqp.Receiver, len(b.cfg.Queues))
	for i, q := range b.cfg.Queues {
		receivers[i], err = sess.NewReceiver(attachCtx, q, ReceiverOptions(q))
		if err != nil {
			return fmt.Errorf("attach receiver to queue %q: %w", q, err)
		}
	}
	cancel()

	b.connected.Store(true)
	b.m.connected.Set(1)
	defer func() {
		b.connected.Store(false)
		b.m.connected.Set(0)
	}()
	onUp()

	g, gctx := errgroup.WithContext(ctx)
	for i, r := range receivers {
		g.Go(func() error {
			return consume(gctx, newLink(r, b.cfg.Queues[i], b.cfg.Credit, b.cfg.Limits, b.m))
		})
	}
	err = g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (b *Broker) dial(ctx context.Context) (*amqp.Conn, error) {
	u, _ := url.Parse(b.cfg.URL) // validated in NewBroker
	opts := &amqp.ConnOptions{
		IdleTimeout: b.cfg.IdleTimeout,
		TLSConfig:   b.tlsCfg,
		Properties:  map[string]any{"product": "cmdtrack"},
	}
	switch {
	case b.cfg.AccessKey != "":
		// The timestamp must be within five minutes of IoTDA's clock, so the
		// username is built afresh on every dial.
		user := fmt.Sprintf("accessKey=%s|timestamp=%d|instanceId=%s",
			b.cfg.AccessKey, time.Now().UnixMilli(), b.cfg.InstanceID)
		opts.SASLType = amqp.SASLTypePlain(user, b.cfg.AccessCode)
		// HostName is the Open frame's vhost; TLS keeps the real host name
		// (set in NewBroker) so the certificate is still verified.
		opts.HostName = "default"
	case u.User != nil:
		pass, _ := u.User.Password()
		opts.SASLType = amqp.SASLTypePlain(u.User.Username(), pass)
	default:
		opts.SASLType = amqp.SASLTypeAnonymous()
	}
	// go-amqp would also read credentials from the URL; they are set above.
	u.User = nil
	dialCtx, cancel := context.WithTimeout(ctx, b.cfg.DialTimeout)
	defer cancel()
	conn, err := amqp.Dial(dialCtx, u.String(), opts)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", u.Host, err)
	}
	return conn, nil
}

// Close closes the connection left open by Run. Links and the session go
// with it; RabbitMQ may never answer a detach, so nothing waits on one.
// ctx bounds the wait for the peer's close.
func (b *Broker) Close(ctx context.Context) error {
	b.mu.Lock()
	conn := b.conn
	b.conn = nil
	b.mu.Unlock()
	if conn == nil {
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- conn.Close() }()
	select {
	case err := <-done:
		var connErr *amqp.ConnError
		if errors.As(err, &connErr) && connErr.RemoteErr == nil {
			return nil // closed by us, as asked
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *Broker) closeConn(conn *amqp.Conn) {
	b.mu.Lock()
	if b.conn == conn {
		b.conn = nil
	}
	b.mu.Unlock()
	if !CloseConn(conn, 5*time.Second) {
		b.log.Debug("closing broker connection timed out")
	}
}
