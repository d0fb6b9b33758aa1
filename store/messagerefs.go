package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/cmdtrack/cmdtrack/notification"
)

// MessageRef is what it takes to ask IoTDA's API about a stored device
// message, and to tell whether an answer changed its row.
type MessageRef struct {
	DeviceID, MessageID string
	Status              notification.MessageStatus
	LastEventTime       time.Time
	// UpdatedAt is when the row last changed: the merge writes a row only
	// when it changes it.
	UpdatedAt time.Time
}

// StuckMessageQuery chooses a page of stuck_messages(Quiet): messages
// PENDING that have not moved for longer than Quiet, within the stuck
// horizon, oldest first by last event time, device id and message id.
type StuckMessageQuery struct {
	Quiet time.Duration
	// After, unless nil, is the last message of the previous page.
	After *MessageRef
	Limit int
}

// StuckMessages returns a page of the messages stuck_messages(q.Quiet)
// holds (migration 015). ctx bounds the query.
func (s *Store) StuckMessages(ctx context.Context, q StuckMessageQuery) ([]MessageRef, error) {
	afterTime, afterDevice, afterID := pgtype.Timestamptz{}, "", ""
	if q.After != nil {
		afterTime, afterDevice, afterID = pgtype.Timestamptz{Time: q.After.LastEventTime, Valid: true}, q.After.DeviceID, q.After.MessageID
	}
	rows, err := s.pool.Query(ctx, `
		SELECT s.device_id, s.message_id, s.status, s.last_event_time, m.updated_at
		FROM stuck_messages($1) s JOIN device_messages m USING (device_id, message_id)
		WHERE ($2::timestamptz IS NULL OR (s.last_event_time, s.device_id, s.message_id) > ($2, $3, $4))
		ORDER BY s.last_event_time, s.device_id, s.message_id
		LIMIT $5`,
		pgInterval(q.Quiet), afterTime, afterDevice, afterID, q.Limit)
	if err != nil {
		return nil, interpretError(fmt.Errorf("select stuck messages: %w", err))
	}
	refs, err := pgx.CollectRows(rows, scanMessageRef)
	if err != nil {
		return nil, interpretError(fmt.Errorf("read stuck messages: %w", err))
	}
	return refs, nil
}

// Message is the stored row of one device message; ok is false when there
// is none. ctx bounds the query.
func (s *Store) Message(ctx context.Context, deviceID, messageID string) (ref MessageRef, ok bool, err error) {
	rows, err := s.pool.Query(ctx, `SELECT device_id, message_id, status, last_event_time, updated_at
		FROM device_messages WHERE device_id = $1 AND message_id = $2`, deviceID, messageID)
	if err != nil {
		return ref, false, interpretError(fmt.Errorf("select message %s of device %s: %w", messageID, deviceID, err))
	}
	ref, err = pgx.CollectExactlyOneRow(rows, scanMessageRef)
	if errors.Is(err, pgx.ErrNoRows) {
		return ref, false, nil
	}
	if err != nil {
		return ref, false, interpretError(fmt.Errorf("read message %s of device %s: %w", messageID, deviceID, err))
	}
	return ref, true, nil
}

func scanMessageRef(row pgx.CollectableRow) (MessageRef, error) {
	var r MessageRef
	var status string
	err := row.Scan(&r.DeviceID, &r.MessageID, &status, &r.LastEventTime, &r.UpdatedAt)
	r.Status = notification.MessageStatus(status)
	return r, err
}
