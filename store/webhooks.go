package store

import "time"

// The webhooks' outbox (issue 29; README "Webhooks"). The merge writes
// outcome_events in the same statement as the row change that causes them
// (migration 013); the fold (FoldOutcomes) moves each event into the
// totals and, in the same statement, into one webhook delivery per
// endpoint whose route takes it. So there is never an event without its
// change, nor a change without its event, and each is dispatched once
// across replicas and redeliveries, as it is counted once.

// WebhookRoute is what the fold needs to know of one endpoint: its name,
// and which events it takes.
type WebhookRoute struct {
	// Endpoint names the endpoint; unique, at most 64 bytes.
	Endpoint string
	// Types are the event types it takes (KindFinished, ...); empty: all.
	Types []string
	// Products are the product ids it takes; empty: all.
	Products []string
}

// WebhookEvent is one event to deliver to one endpoint: a row of
// webhook_deliveries.
type WebhookEvent struct {
	// ID is the delivery's row id, for Delivered, Retry and Fail.
	ID int64
	// WebhookID is the event's stable id, the same for every endpoint and
	// every attempt: the webhook-id header receivers deduplicate on.
	WebhookID string
	Endpoint  string
	// Type is the outcome_events kind: command.finished, ...
	Type string
	// Subject names the row: a command id, 'device_id/message_id' for a
	// device message, a call id.
	Subject    string
	ProductID  string
	Status     string
	FromStatus string
	// OccurredAt is when the merge wrote the event.
	OccurredAt time.Time
	// Attempts counts the claims so far, this one included.
	Attempts int
}

// WebhookBacklog is one endpoint's outbox: what is waiting, how old the
// oldest is, and what failed for good.
type WebhookBacklog struct {
	Endpoint string
	Pending  int64
	// OldestPending is the OccurredAt of the oldest pending event; zero
	// when none is.
	OldestPending time.Time
	Failed        int64
}
