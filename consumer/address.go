// Package consumer is the pipeline's AMQP 1.0 source: it dials the broker
// (IoTDA, or RabbitMQ for local runs), keeps one receiver link per queue with
// credit issued by hand, classifies every message and hands it to the
// pipeline, and re-dials with backoff when anything breaks.
package consumer

import (
	"strings"
	"time"

	"github.com/Azure/go-amqp"
)

// RabbitMQ's AMQP 1.0 plugin declares a durable queue for the address
// /queue/NAME, and refuses (PRECONDITION_FAILED) a link whose source or
// target is not durable there. IoTDA's plain queue names, and RabbitMQ's
// /amq/queue/NAME, get go-amqp's defaults. Everything that attaches to a
// queue (the worker, the simulator, the tests, the benchmarks) asks here.
func declaresQueue(address string) bool { return strings.HasPrefix(address, "/queue/") }

// ReceiverOptions are the options to consume address with manual credit
// (see Link).
func ReceiverOptions(address string) *amqp.ReceiverOptions {
	opts := &amqp.ReceiverOptions{Credit: -1}
	if declaresQueue(address) {
		opts.SourceDurability = amqp.DurabilityUnsettledState
	}
	return opts
}

// SenderOptions are the options to publish to address.
func SenderOptions(address string) *amqp.SenderOptions {
	if declaresQueue(address) {
		return &amqp.SenderOptions{TargetDurability: amqp.DurabilityUnsettledState}
	}
	return nil
}

// CloseConn closes conn, waiting at most d, and reports whether the close
// finished in time. RabbitMQ may never answer a detach or a close, so
// nothing waits on one without a deadline.
func CloseConn(conn *amqp.Conn, d time.Duration) bool { return closeWithin(conn, d) }
