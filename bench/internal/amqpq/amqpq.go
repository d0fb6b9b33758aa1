// Package amqpq holds what the benchmark programs share to consume a
// RabbitMQ queue over AMQP 1.0 the way cmdtrack does: manual credit, one
// window at a time, and closing with deadlines.
package amqpq

import (
	"context"
	"fmt"
	"time"

	"github.com/Azure/go-amqp"

	"github.com/cmdtrack/cmdtrack/consumer"
)

// Receiver is one receiver link on its own connection.
type Receiver struct {
	Conn *amqp.Conn
	Link *amqp.Receiver
	// Window is the credit issued at a time.
	Window int

	outstanding int
}

// Open dials url and attaches a receiver to queue with manual credit.
func Open(ctx context.Context, url, queue string, window int) (*Receiver, error) {
	if window < 1 {
		window = 1
	}
	conn, err := amqp.Dial(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	sess, err := conn.NewSession(ctx, nil)
	if err != nil {
		consumer.CloseConn(conn, 5*time.Second)
		return nil, fmt.Errorf("begin session: %w", err)
	}
	link, err := sess.NewReceiver(ctx, queue, consumer.ReceiverOptions(queue))
	if err != nil {
		consumer.CloseConn(conn, 5*time.Second)
		return nil, fmt.Errorf("attach receiver to %s: %w", queue, err)
	}
	return &Receiver{Conn: conn, Link: link, Window: window}, nil
}

// Receive returns the next message, issuing a new window of credit only
// once the previous window has fully arrived (RabbitMQ's AMQP 1.0 plugin
// over-delivers, and go-amqp then stalls, when a flow frame crosses
// transfers in flight).
func (r *Receiver) Receive(ctx context.Context) (*amqp.Message, error) {
	if r.outstanding == 0 {
		if err := r.Link.IssueCredit(uint32(r.Window)); err != nil {
			return nil, fmt.Errorf("issue credit: %w", err)
		}
		r.outstanding = r.Window
	}
	m, err := r.Link.Receive(ctx, nil)
	if err != nil {
		return nil, err
	}
	r.outstanding--
	return m, nil
}

// Close closes the connection, waiting at most d (RabbitMQ may never
// answer a detach).
func (r *Receiver) Close(d time.Duration) { consumer.CloseConn(r.Conn, d) }
