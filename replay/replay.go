// Package replay gives dead letters another chance (cmdtrack replay): each
// is decided again by the current decoder, as the message it was, and the
// store keeps what that makes of it in its place. The decision is made here;
// the store only persists it.
package replay

import (
	"context"
	"time"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/store"
)

// Store is what replay reads and writes (a *store.Store).
type Store interface {
	ReplaceDeadLetter(ctx context.Context, after int64, decide func(store.StoredDeadLetter) ingest.Item) (int64, ingest.Result, error)
}

// Result counts what Run did with the dead letters it saw.
type Result struct {
	Applied      int // decoded and stored; removed from dead_letters
	Skipped      int // now recognised as another resource; removed
	StillFailing int // kept, with the decoder's new reason
}

// Run decides every dead letter again once, in id order, with lim (see
// Decide), one transaction each: those that now decode are applied and
// deleted, those of another resource deleted, the rest keep their row with
// the new reason. It stops at the first error the store returns. ctx bounds
// the whole run; what was done before it ended stays done.
func Run(ctx context.Context, st Store, lim ingest.Limits) (Result, error) {
	var res Result
	var after int64
	for {
		id, r, err := st.ReplaceDeadLetter(ctx, after, func(dl store.StoredDeadLetter) ingest.Item {
			return Decide(dl, time.Now(), lim)
		})
		if err != nil {
			return res, err
		}
		if id == 0 {
			return res, nil
		}
		after = id
		switch r.Outcome {
		case ingest.Applied:
			res.Applied++
		case ingest.Skipped:
			res.Skipped++
		default:
			res.StillFailing++
		}
	}
}

// Decide is what a dead letter is, replayed at now: what the current
// decoder makes of its body (ingest.Reclassify), timing a format without
// times by its receipt but judging a time ahead against the later of its
// receipt and now, so that what a lagging clock refused goes through and a
// forgery does not. A body kept only in part can never decode, and stays
// the dead letter it is.
func Decide(dl store.StoredDeadLetter, now time.Time, lim ingest.Limits) ingest.Item {
	if dl.Truncated {
		return ingest.Unusable(dl.Source, dl.Body, dl.Class, dl.Reason)
	}
	return ingest.Reclassify(dl.Body, dl.Source, dl.ReceivedAt, now, lim)
}
