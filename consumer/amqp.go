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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/go-amqp"
	"golang.org/x/sync/errgroup"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/backoff"
	"github.com/cmdtrack/cmdtrack/pipeline"
)

// BrokerConfig says where the queues are and how to hold the connection.
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
	// MaxBytes bounds the message bytes held (received and not yet settled)
	// plus those asked for (credit issued, each counted at the largest size
	// a message may have), across all links. Each queue's link has an equal
	// share: an idle link keeps the credit it issued, and must not starve
	// the others of theirs.
	MaxBytes int64
	// Limits are what a message may be (see ingest.Classify).
	Limits      ingest.Limits
	IdleTimeout time.Duration
	DialTimeout time.Duration
	// Reconnect backoff: doubles from ReconnectMin up to ReconnectMax, with
	// jitter, after every failed attempt, for the connection and for each
	// queue's link on its own.
	ReconnectMin time.Duration
	ReconnectMax time.Duration
	// BacklogRetention is how long the platform keeps a queue's backlog
	// (IoTDA: 24 hours). A queue not consumed for longer may have lost
	// notifications, which cmdtrack then says.
	BacklogRetention time.Duration
	// Watermarks, if set, keeps when each queue was last consumed across
	// restarts, so that a gap that began before this process is seen too;
	// they are saved every WatermarkInterval (zero: a minute).
	Watermarks        Watermarks
	WatermarkInterval time.Duration
}

// Watermarks keeps when each queue's messages were last settled; the
// store is one.
type Watermarks interface {
	QueueWatermarks(ctx context.Context) (map[string]time.Time, error)
	SaveQueueWatermarks(ctx context.Context, marks map[string]time.Time) error
}

// Broker is the pipeline's AMQP source: it holds the connection and one
// receiver link per queue, each on its own session, and hands every link to
// the pipeline as a Receiver. A queue that cannot be attached (deleted, no
// permission, a typo) is retried on its own, with its own backoff, while the
// others keep flowing; the connection is re-dialled only when it dies.
type Broker struct {
	cfg       BrokerConfig
	log       *slog.Logger
	m         *Metrics
	queues    []*queue
	connected atomic.Bool

	mu   sync.Mutex
	conn conn // the live connection, if any; closed by Close

	// The seams at go-amqp and the clock; tests replace them.
	dialer dialer
	now    func() time.Time
	// pause waits d, or until ctx ends (false).
	pause func(ctx context.Context, d time.Duration) bool
	// Set by tests: wrap wraps every receiver a link uses; senderMode
	// replaces the sender settle mode asked for.
	wrap       func(amqpReceiver) amqpReceiver
	senderMode *amqp.SenderSettleMode
}

// NewBroker validates cfg. It does not dial.
func NewBroker(cfg BrokerConfig, log *slog.Logger, m *Metrics) (*Broker, error) {
	return newBroker(cfg, log, m, time.Now)
}

// newBroker is NewBroker on the clock now.
func newBroker(cfg BrokerConfig, log *slog.Logger, m *Metrics, now func() time.Time) (*Broker, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, errors.New("CMDTRACK_AMQP_URL is not a URL")
	}
	if u.Scheme != "amqp" && u.Scheme != "amqps" {
		return nil, fmt.Errorf("CMDTRACK_AMQP_URL: scheme %q, want amqp or amqps", u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, errors.New("CMDTRACK_AMQP_URL has no host")
	}
	if len(cfg.Queues) == 0 {
		return nil, errors.New("no queue to consume")
	}
	for _, q := range cfg.Queues {
		if err := ValidQueueName(q); err != nil {
			return nil, err
		}
	}
	if cfg.AccessKey != "" && (cfg.AccessCode == "" || cfg.InstanceID == "") {
		return nil, errors.New("CMDTRACK_AMQP_ACCESS_KEY is set without CMDTRACK_AMQP_ACCESS_CODE or CMDTRACK_AMQP_INSTANCE_ID")
	}
	cfg.Credit = max(cfg.Credit, 2)
	if cfg.Limits.MaxBodyBytes <= 0 {
		cfg.Limits.MaxBodyBytes = 1 << 20
	}
	// At least one message of the largest size must fit in each share.
	cfg.MaxBytes = max(cfg.MaxBytes, int64(cfg.Limits.MaxBodyBytes)*int64(len(cfg.Queues)))
	if cfg.BacklogRetention <= 0 {
		cfg.BacklogRetention = 24 * time.Hour
	}
	if cfg.WatermarkInterval <= 0 {
		cfg.WatermarkInterval = time.Minute
	}
	b := &Broker{cfg: cfg, log: log, m: m, now: now, pause: sleep}
	share := cfg.MaxBytes / int64(len(cfg.Queues))
	for _, name := range cfg.Queues {
		b.queues = append(b.queues, newQueue(name, share, m, newBacklog(cfg.BacklogRetention, b.now)))
		// At zero from the start, so that the first gap is an increase.
		m.backlogGaps.WithLabelValues(name, "lost")
		m.backlogGaps.WithLabelValues(name, "at_risk")
	}
	var tlsCfg *tls.Config
	if u.Scheme == "amqps" {
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.Hostname()}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("read CA file (CMDTRACK_AMQP_CA_FILE): %w", err)
			}
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("CA file %s (CMDTRACK_AMQP_CA_FILE) holds no PEM certificate", cfg.CAFile)
			}
			tlsCfg.RootCAs = pool
		}
	}
	b.dialer = amqpDialer{cfg: cfg, tlsCfg: tlsCfg, now: b.now}
	return b, nil
}

// sleep waits d, or until ctx ends (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// ValidQueueName reports why name cannot be a queue address, or nil.
func ValidQueueName(name string) error {
	switch {
	case name == "":
		return errors.New("empty queue name in CMDTRACK_AMQP_QUEUE")
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("queue name %q in CMDTRACK_AMQP_QUEUE has leading or trailing white space", name)
	case strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return fmt.Errorf("queue name %q in CMDTRACK_AMQP_QUEUE has a control character", name)
	}
	return nil
}

// Connected reports whether the connection is up (links may still fail).
func (b *Broker) Connected() bool { return b.connected.Load() }

// Ready reports why the broker's side of the worker cannot do its work now:
// the connection is down, or a queue is not attached (named, with why).
func (b *Broker) Ready() error {
	if !b.connected.Load() {
		return errors.New("not connected to the broker")
	}
	var failing []string
	for _, q := range b.queues {
		if !q.attached.Load() {
			failing = append(failing, q.status())
		}
	}
	if len(failing) > 0 {
		return errors.New(strings.Join(failing, "; "))
	}
	return nil
}

// Log lines the README tells an operator to look for (one per outage, not
// per attempt); tests match them.
const (
	LogBadCertificate = "the broker's TLS certificate is not trusted; if a private CA signed it, set CMDTRACK_AMQP_CA_FILE to that CA's certificate (PEM)"
	LogAuthRefused    = "the broker refused cmdtrack's credentials; retrying"
	LogBacklogLost    = "notifications may have been lost while the queue was not consumed: the platform keeps a backlog only so long"
	LogBacklogAtRisk  = "nothing of this queue has been stored for longer than the platform keeps its backlog: notifications are being lost"
)

// The connection's other lines, one per outage; cmdtrack_broker_connected,
// _outages_total and _reconnects_total say the same for tests and alerts.
const (
	logConnected     = "connected to broker"
	logConnLost      = "broker connection lost; reconnecting"
	logConnRestored  = "broker connection restored"
	logStillDown     = "broker still unreachable"
	logReconnectFail = "broker reconnect failed"
	logCannotConnect = "cannot connect to the broker; retrying"
)

// Run keeps the connection and every queue's link up until ctx ends,
// re-dialling with backoff when the connection dies, and runs consume on
// each link (one goroutine per queue) for as long as the link lives. It
// returns nil when ctx ends. The connection is left open then, so that
// messages in hand can still be settled: call Close once they are.
func (b *Broker) Run(ctx context.Context, consume func(context.Context, pipeline.Receiver) error) error {
	b.loadWatermarks(ctx)
	watch, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go b.watchBacklogs(watch)
	var (
		attempt   int
		downSince time.Time
		lastKind  dialFailure
		everUp    bool
	)
	for {
		c, err := b.dialer.Dial(ctx)
		if err == nil {
			if !downSince.IsZero() {
				b.log.Info(logConnRestored, "down_for", b.now().Sub(downSince).Round(time.Millisecond), "attempts", attempt)
			} else {
				b.log.Info(logConnected, "queues", b.cfg.Queues)
			}
			everUp, downSince, lastKind = true, time.Time{}, 0
			up := b.now()
			err = b.serve(ctx, c, consume)
			if ctx.Err() != nil {
				return nil
			}
			// A connection that dies right after it opens does not earn a
			// fresh backoff: that would re-dial (and redeliver everything
			// unsettled) at the fastest pace for ever.
			if b.now().Sub(up) > b.healthyAfter() {
				attempt = 0
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		b.m.reconnects.Inc()
		attempt++
		kind := classifyDial(err)
		switch {
		case downSince.IsZero():
			downSince = b.now()
			b.m.outages.Inc()
			b.logFailure(kind, everUp, err)
		case kind != lastKind:
			b.logFailure(kind, everUp, err)
		default:
			b.log.Debug(logReconnectFail, "attempt", attempt, "err", err)
			if attempt%20 == 0 {
				b.log.Warn(logStillDown, "down_for", b.now().Sub(downSince).Round(time.Second), "attempts", attempt, "err", err)
			}
		}
		lastKind = kind
		if !b.pause(ctx, backoff.Delay(attempt, b.cfg.ReconnectMin, b.cfg.ReconnectMax)) {
			return nil
		}
	}
}

// loadWatermarks starts each queue's gap where the last run left it, if it
// is older than this start.
func (b *Broker) loadWatermarks(ctx context.Context) {
	if b.cfg.Watermarks == nil {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	marks, err := b.cfg.Watermarks.QueueWatermarks(lctx)
	if err != nil {
		// The database may be away: the gap then counts from this start.
		b.log.Debug("could not read when the queues were last consumed", "err", err)
		return
	}
	for _, q := range b.queues {
		if at, ok := marks[q.name]; ok {
			q.backlog.restore(at)
		}
	}
}

// watchBacklogs checks the queues' backlogs every WatermarkInterval until
// ctx ends.
func (b *Broker) watchBacklogs(ctx context.Context) {
	t := time.NewTicker(b.cfg.WatermarkInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b.checkBacklogs(ctx)
	}
}

// checkBacklogs saves when each queue was last consumed, and says once per
// gap when a queue whose messages are held (the database away) has settled
// nothing for longer than the platform keeps its backlog: notifications may
// be lost meanwhile.
func (b *Broker) checkBacklogs(ctx context.Context) {
	marks := map[string]time.Time{}
	for _, q := range b.queues {
		if at, ok := q.backlog.watermark(); ok {
			marks[q.name] = at
		}
		if since, ok := q.backlog.atRisk(); ok {
			b.m.backlogGaps.WithLabelValues(q.name, "at_risk").Inc()
			b.log.Warn(LogBacklogAtRisk, "queue", q.name, "since", since.UTC().Format(time.RFC3339),
				"repair", "once writes recover: cmdtrack reconcile -since "+since.UTC().Format(time.RFC3339))
		}
	}
	if b.cfg.Watermarks == nil || len(marks) == 0 {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.cfg.Watermarks.SaveQueueWatermarks(sctx, marks); err != nil {
		b.log.Debug("could not save when the queues were last consumed", "err", err)
		return
	}
	for _, q := range b.queues {
		if at, ok := marks[q.name]; ok {
			q.backlog.markSaved(at)
		}
	}
}

// healthyAfter is how long a connection or link must live before its
// failure counts as a new incident rather than part of the last one.
func (b *Broker) healthyAfter() time.Duration { return max(30*time.Second, b.cfg.ReconnectMax) }

// dialFailure is why a connection could not be had, for the operator.
type dialFailure int

const (
	failedNetwork     dialFailure = iota + 1 // unreachable, reset, restarted: it passes
	failedCertificate                        // the server's certificate is not trusted
	failedAuth                               // SASL refused the credentials
)

// classifyDial tells the failures an operator must act on (certificate,
// credentials) from those that pass (network, broker restart).
func classifyDial(err error) dialFailure {
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	switch {
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr):
		return failedCertificate
	case errors.Is(err, errAuth):
		return failedAuth
	}
	return failedNetwork
}

func (b *Broker) logFailure(kind dialFailure, everUp bool, err error) {
	switch kind {
	case failedCertificate:
		b.log.Error(LogBadCertificate, "err", err)
	case failedAuth:
		if b.cfg.AccessKey != "" {
			b.log.Error(LogAuthRefused, "check", "CMDTRACK_AMQP_ACCESS_KEY, CMDTRACK_AMQP_ACCESS_CODE and CMDTRACK_AMQP_INSTANCE_ID", "err", err)
		} else {
			b.log.Error(LogAuthRefused, "check", "the user and password in CMDTRACK_AMQP_URL", "err", err)
		}
	default:
		if everUp {
			b.log.Warn(logConnLost, "err", err)
		} else {
			b.log.Warn(logCannotConnect, "err", err)
		}
	}
}

// errAuth marks a refusal of the credentials (see saslRefused).
var errAuth = errors.New("authentication refused")

// errConnDied marks the end of a connection that was up.
var errConnDied = errors.New("broker connection closed")

// serve runs every queue on conn until ctx ends (nil, connection left open)
// or the connection dies (its error, connection closed).
func (b *Broker) serve(ctx context.Context, conn conn, consume func(context.Context, pipeline.Receiver) error) error {
	b.mu.Lock()
	b.conn = conn
	b.mu.Unlock()
	b.connected.Store(true)
	b.m.connected.Set(1)
	defer func() {
		b.connected.Store(false)
		b.m.connected.Set(0)
	}()
	g, gctx := errgroup.WithContext(ctx)
	for _, q := range b.queues {
		g.Go(func() error { return b.runQueue(gctx, conn, q, consume) })
	}
	err := g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	b.closeConn(conn)
	if err == nil {
		err = errConnDied
	}
	return err
}

// Close closes the connection left open by Run. Links and sessions go with
// it; RabbitMQ may never answer a detach, so nothing waits on one.
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

func (b *Broker) closeConn(conn conn) {
	b.mu.Lock()
	if b.conn == conn {
		b.conn = nil
	}
	b.mu.Unlock()
	if !closeWithin(conn, 5*time.Second) {
		b.log.Debug("closing broker connection timed out")
	}
}
