package consumer

import (
	"github.com/Azure/go-amqp"
)

// Hooks for the external tests of this package.

// AMQPReceiver is what a link needs of *amqp.Receiver.
type AMQPReceiver = amqpReceiver

// WrapReceivers makes b wrap every receiver its links use.
func WrapReceivers(b *Broker, wrap func(AMQPReceiver) AMQPReceiver) { b.wrap = wrap }

// LogSessionNotClosed is logged when an aborted link's session did not end
// in time and the connection went instead.
const LogSessionNotClosed = logSessionNotClosed

// AskSenderSettleMode makes b ask the broker for mode instead of unsettled.
func AskSenderSettleMode(b *Broker, mode amqp.SenderSettleMode) { b.senderMode = &mode }

// Presettled is presettled.
var Presettled = presettled

// LogMixedSettle is logMixedSettle, for the pin test of the settle mode.
const LogMixedSettle = logMixedSettle
