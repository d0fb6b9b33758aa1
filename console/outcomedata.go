package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// OutcomeData is the row an outcome event names (issue 29's webhooks: the
// payload's data), as the console's JSON gives it now: for command.* the
// command of /commands/{id} (its durations, without the timeline), for
// message.* the message of /messages/{device}/{id}, the subject being
// 'device_id/message_id' (split at the first '/': IoTDA's device ids hold
// none), for call.* the call of /calls/{id}. nil, without an error, when
// the row is gone (retention deleted it).
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
