package reconcile

import (
	"context"
	"fmt"
	"time"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/iotdaapi"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/store"
)

// messages checks, after a threshold run's commands, the device messages
// stuck_messages(threshold) holds: PENDING for longer than the threshold,
// within the stuck horizon, oldest first, a page at a time.
func (ru *run) messages(ctx context.Context, threshold time.Duration) error {
	q := store.StuckMessageQuery{Quiet: threshold, Limit: ru.r.cfg.PageSize}
	// A row the run updates may move within the selection and come up again
	// on a later page: ask once per run.
	seen := map[string]bool{}
	for {
		page, err := ru.r.st.StuckMessages(ctx, q)
		if err != nil {
			return fmt.Errorf("reconcile: %w", err)
		}
		for _, ref := range page {
			key := messageKey(ref.DeviceID, ref.MessageID)
			if seen[key] || ru.r.recent(key, ru.now) {
				continue
			}
			seen[key] = true
			c, err := ru.r.checkMessage(ctx, ref)
			if err != nil {
				return err
			}
			ru.sum.add(c.Outcome)
			ru.r.m.countMessage(c.Outcome)
			ru.r.remember(key, c.Outcome, threshold, ru.now)
			if ru.report != nil {
				ru.report(c)
			}
		}
		if len(page) < q.Limit {
			return nil
		}
		q.After = &page[len(page)-1]
	}
}

// messageKey names a message in what the Reconciler remembers, apart from
// any command id: a message id is unique per device only.
func messageKey(deviceID, messageID string) string {
	return "message:" + deviceID + "/" + messageID
}

// checkMessage asks the API about one device message and stores its answer.
// It returns an error only when the run must stop.
func (r *Reconciler) checkMessage(ctx context.Context, ref store.MessageRef) (Check, error) {
	c := Check{MessageID: ref.MessageID, DeviceID: ref.DeviceID, Stored: notification.Status(ref.Status)}
	log := r.log.With("message_id", ref.MessageID, "device_id", ref.DeviceID)
	var answer *iotdaapi.DeviceMessage
	err := r.ask(ctx, log, func(ctx context.Context) (err error) {
		answer, err = r.api.ShowDeviceMessage(ctx, ref.DeviceID, ref.MessageID)
		return err
	})
	if done, stop := r.judge(ctx, err, &c, log); done {
		return c, stop
	}
	c.API = notification.Status(answer.Status)
	item, err := ingest.FromAPIMessage(answer, r.now(), r.cfg.Limits)
	if err != nil {
		return r.unusable(c, err, log), nil
	}
	res, err := r.st.ApplyReportingChanges(ctx, []ingest.Item{item})
	if err == nil && !r.refused(&c, res[0], log) {
		// The store does not say which message a record changed: the row
		// says it, since the merge writes a row only when it changes it.
		var after store.MessageRef
		var ok bool
		after, ok, err = r.st.Message(ctx, ref.DeviceID, ref.MessageID)
		c.Outcome = Unchanged
		if err == nil && (!ok || !after.UpdatedAt.Equal(ref.UpdatedAt)) {
			c.Outcome = Updated
			log.Debug("reconcile: updated", "stored", string(c.Stored), "api", string(c.API))
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return c, ctx.Err()
		}
		return c, fmt.Errorf("reconcile: store the answer for message %s of device %s: %w", ref.MessageID, ref.DeviceID, err)
	}
	return c, nil
}
