package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// OutcomeData is the row an outcome event names (issue 29's webhooks: the
// payload's data), as the console's JSON gives it now: for command.* the
// command of /commands/{id} (its durations, without the timeline), for
// message.* the message of /messages/{device}/{id}, the subject being
// 'device_id/message_id' (split at the first '/': IoTDA's device ids hold
// none, and notification.DecodeMessage dead-letters one that does), for
// call.* the call of /calls/{id}. nil, without an error, when the row is
// gone (retention deleted it).
func OutcomeData(ctx context.Context, db *pgxpool.Pool, typ, subject string) (json.RawMessage, error) {
	var row any
	var err error
	switch kind, _, _ := strings.Cut(typ, "."); kind {
	case "command":
		row, err = readCommand(ctx, db, subject)
	case "message":
		device, id, ok := strings.Cut(subject, "/")
		if !ok {
			return nil, fmt.Errorf("outcome event %s names %q: a message is named device_id/message_id", typ, subject)
		}
		row, err = readMessage(ctx, db, device, id)
	case "call":
		row, err = readCall(ctx, db, subject)
	default:
		return nil, fmt.Errorf("outcome event type %q: the console knows command.*, message.* and call.*", typ)
	}
	if errors.Is(err, errNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(row)
}

// OutcomeSubject names the row of one outcome event: its type and subject,
// as OutcomeData takes them.
type OutcomeSubject struct {
	Type, Subject string
}

// OutcomeDataMany is OutcomeData of each of subjects, in their order, in
// one statement per kind among them rather than one per event (the
// webhooks read a claim's rows at once: issue 29's cost). A row gone is
// nil. Any subject OutcomeData refuses, or any row that does not scan,
// fails the whole read: OutcomeData, one at a time, then says which.
func OutcomeDataMany(ctx context.Context, db *pgxpool.Pool, subjects []OutcomeSubject) ([]json.RawMessage, error) {
	var commands, calls, devices, messages []string
	for _, s := range subjects {
		switch kind, _, _ := strings.Cut(s.Type, "."); kind {
		case "command":
			commands = append(commands, s.Subject)
		case "message":
			device, id, ok := strings.Cut(s.Subject, "/")
			if !ok {
				return nil, fmt.Errorf("outcome event %s names %q: a message is named device_id/message_id", s.Type, s.Subject)
			}
			devices, messages = append(devices, device), append(messages, id)
		case "call":
			calls = append(calls, s.Subject)
		default:
			return nil, fmt.Errorf("outcome event type %q: the console knows command.*, message.* and call.*", s.Type)
		}
	}
	rows := map[OutcomeSubject]any{}
	if len(commands) > 0 {
		if err := readMany(ctx, db, outcomeCommandsSQL, []any{commands}, scanCommand,
			func(c *Command) OutcomeSubject { return OutcomeSubject{"command", c.CommandID} }, rows); err != nil {
			return nil, fmt.Errorf("read commands: %w", err)
		}
	}
	if len(messages) > 0 {
		if err := readMany(ctx, db, outcomeMessagesSQL, []any{devices, messages}, scanMessage,
			func(m *Message) OutcomeSubject { return OutcomeSubject{"message", m.DeviceID + "/" + m.MessageID} }, rows); err != nil {
			return nil, fmt.Errorf("read messages: %w", err)
		}
	}
	if len(calls) > 0 {
		if err := readMany(ctx, db, outcomeCallsSQL, []any{calls}, scanCall,
			func(c Call) OutcomeSubject { return OutcomeSubject{"call", c.CallID} }, rows); err != nil {
			return nil, fmt.Errorf("read calls: %w", err)
		}
	}
	out := make([]json.RawMessage, len(subjects))
	for i, s := range subjects {
		kind, _, _ := strings.Cut(s.Type, ".")
		row, ok := rows[OutcomeSubject{kind, s.Subject}]
		if !ok {
			continue
		}
		b, err := json.Marshal(row)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

// OutcomeDataMany's statements, one a kind: each reads its rows by their
// key whatever the plan (the deliverer's pool plans generically, store
// Options.GenericPlans), TestOutcomeDataManyPlans.
const (
	outcomeCommandsSQL = `SELECT ` + commandColumns + ` FROM device_commands WHERE command_id = ANY ($1)`
	outcomeMessagesSQL = `SELECT ` + messageColumns + ` FROM device_messages
		WHERE (device_id, message_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`
	outcomeCallsSQL = `SELECT ` + callColumns + ` FROM device_calls WHERE call_id = ANY ($1)`
)

// readMany scans every row of query with scan into rows, under the key
// each gives.
func readMany[T any](ctx context.Context, db *pgxpool.Pool, query string, args []any,
	scan func(pgx.Row) (T, error), key func(T) OutcomeSubject, rows map[OutcomeSubject]any) error {
	rs, err := db.Query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rs.Close()
	for rs.Next() {
		r, err := scan(rs)
		if err != nil {
			return err
		}
		rows[key(r)] = r
	}
	return rs.Err()
}
