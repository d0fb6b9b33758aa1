package store

// QueueWrites is queueWrites, for tests that hold a transaction open.
var QueueWrites = queueWrites

// InterpretError is interpretError, for the boundary's tests.
var InterpretError = interpretError

// FoldOutcomesSQL is FoldOutcomes' statement, for its plan's test.
const FoldOutcomesSQL = foldOutcomes

// ClaimWebhooksSQL is ClaimWebhooks' statement, for its plan's test.
const ClaimWebhooksSQL = claimWebhooks

// The outbox's other statements, for their plans' test.
const (
	SettleDeliveredSQL = settleDelivered
	SettleSubjectsSQL  = settleSubjectsSQL
	RetryWebhookSQL    = retryWebhook
	WakeHeldSQL        = wakeHeldWebhooks
)
