package consumer

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/go-amqp"
)

// The broker reaches go-amqp through these three seams, so that re-dial,
// per-queue backoff and attach failures are tested on fakes in milliseconds
// (as Link's credit is through amqpReceiver). amqpDialer, amqpConn and
// amqpSession are the real ones.

// dialer opens a connection to the broker.
type dialer interface {
	Dial(ctx context.Context) (conn, error)
}

// conn is an open connection: sessions begin on it, and Done is closed when
// it has ended.
type conn interface {
	NewSession(ctx context.Context) (session, error)
	Done() <-chan struct{}
	io.Closer
}

// session is one queue's session, on which its receiver attaches.
type session interface {
	NewReceiver(ctx context.Context, source string, opts *amqp.ReceiverOptions) (amqpReceiver, error)
	Close(ctx context.Context) error
}

// amqpDialer dials with go-amqp: IoTDA's SASL form, or a plain URL's.
type amqpDialer struct {
	cfg    BrokerConfig
	tlsCfg *tls.Config
	now    func() time.Time
}

// Dial opens a connection within the dial timeout.
func (d amqpDialer) Dial(ctx context.Context) (conn, error) {
	u, _ := url.Parse(d.cfg.URL) // validated in NewBroker
	opts := &amqp.ConnOptions{
		IdleTimeout: d.cfg.IdleTimeout,
		TLSConfig:   d.tlsCfg,
		Properties:  map[string]any{"product": "cmdtrack"},
	}
	switch {
	case d.cfg.AccessKey != "":
		// The timestamp must be within five minutes of IoTDA's clock, so the
		// username is built afresh on every dial.
		user := fmt.Sprintf("accessKey=%s|timestamp=%d|instanceId=%s",
			d.cfg.AccessKey, d.now().UnixMilli(), d.cfg.InstanceID)
		opts.SASLType = amqp.SASLTypePlain(user, d.cfg.AccessCode)
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
	dialCtx, cancel := context.WithTimeout(ctx, d.cfg.DialTimeout)
	defer cancel()
	c, err := amqp.Dial(dialCtx, u.String(), opts)
	if err != nil {
		if saslRefused(err) {
			err = fmt.Errorf("%w: %w", errAuth, err)
		}
		return nil, fmt.Errorf("dial %s: %w", u.Host, err)
	}
	return amqpConn{c}, nil
}

// saslRefused reports whether err is a SASL outcome other than ok. go-amqp
// (v1.7) has no type for it, only this text; TestRefusedCredentialsAreRecognised
// pins it against a real broker.
func saslRefused(err error) bool {
	return strings.Contains(err.Error(), "SASL") && strings.Contains(err.Error(), "auth failed")
}

// settleModeRefused reports whether an attach failed because the broker
// answered another sender settle mode than the one asked for. go-amqp (v1.7)
// has no type for it, only this text; TestMixedSettleModeFallsBack pins it
// against a real broker.
func settleModeRefused(err error) bool {
	return strings.Contains(err.Error(), "settlement mode")
}

type amqpConn struct{ *amqp.Conn }

func (c amqpConn) NewSession(ctx context.Context) (session, error) {
	s, err := c.Conn.NewSession(ctx, nil)
	if err != nil {
		return nil, err
	}
	return amqpSession{s}, nil
}

type amqpSession struct{ *amqp.Session }

func (s amqpSession) NewReceiver(ctx context.Context, source string, opts *amqp.ReceiverOptions) (amqpReceiver, error) {
	r, err := s.Session.NewReceiver(ctx, source, opts)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// closeWithin closes c, waiting at most d, and reports whether the close
// finished in time.
func closeWithin(c io.Closer, d time.Duration) bool {
	done := make(chan struct{})
	go func() { _ = c.Close(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}
