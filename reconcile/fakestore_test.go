package reconcile_test

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/reconcile"
	"github.com/cmdtrack/cmdtrack/store"
)

// fakeStore is reconcile.Store in memory, for the tests of what reconcile
// decides: which commands it asks about, what it counts, when it stops.
// Its rows keep what the selection reads (status, device, last event); its
// merge is the rule's outline (a higher rank wins, then a later event),
// enough to say whether an answer changed a row. The merge itself, the
// history and the SQL of the selection are the store's, tested there and by
// this package's tests against PostgreSQL.
type fakeStore struct {
	mu      sync.Mutex
	rows    map[string]store.CommandRef
	applied map[string]int // answers written, per command (the history's "api" rows)
	// msgs are the device messages, by device and message id; writes counts
	// their row changes, standing in for updated_at.
	msgs    map[[2]string]store.MessageRef
	writes  int64
	horizon time.Duration
	locked  bool
	// down, when set, is every read's error: the database is away.
	down error
}

var _ reconcile.Store = (*fakeStore)(nil)

func newFakeStore() *fakeStore {
	// cmdtrack_settings.stuck_horizon's default.
	return &fakeStore{rows: map[string]store.CommandRef{}, applied: map[string]int{}, horizon: 3 * 24 * time.Hour,
		msgs: map[[2]string]store.MessageRef{}}
}

func (s *fakeStore) setHorizon(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.horizon = d
}

func (s *fakeStore) row(id string) store.CommandRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rows[id]
}

func (s *fakeStore) answers(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied[id]
}

// merge applies n to its row, and reports whether the row changed.
func (s *fakeStore) merge(n *notification.Notification) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.rows[n.CommandID]
	oldRank, _ := old.Status.Rank()
	newRank, _ := n.Status.Rank()
	if ok && (newRank < oldRank || newRank == oldRank && !n.EventTime.After(old.LastEventTime)) {
		return false
	}
	device := n.DeviceID
	if device == "" {
		device = old.DeviceID
	}
	s.rows[n.CommandID] = store.CommandRef{CommandID: n.CommandID, DeviceID: device, Status: n.Status, LastEventTime: n.EventTime}
	return true
}

func (s *fakeStore) OpenCommands(_ context.Context, q store.OpenQuery) ([]store.CommandRef, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down != nil {
		return nil, s.down
	}
	var page []store.CommandRef
	for _, r := range s.rows {
		switch {
		case r.Status.Final(), !r.LastEventTime.Before(q.Before),
			!q.Since.IsZero() && r.LastEventTime.Before(q.Since),
			q.After != nil && compareRefs(r, *q.After) <= 0:
			continue
		}
		page = append(page, r)
	}
	slices.SortFunc(page, compareRefs)
	return page[:min(len(page), q.Limit)], nil
}

// compareRefs is the selection's order: last event, then command id.
func compareRefs(a, b store.CommandRef) int {
	return cmp.Or(a.LastEventTime.Compare(b.LastEventTime), cmp.Compare(a.CommandID, b.CommandID))
}

func (s *fakeStore) CommandsByID(_ context.Context, ids []string) ([]store.CommandRef, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down != nil {
		return nil, s.down
	}
	var refs []store.CommandRef
	for _, id := range ids {
		if r, ok := s.rows[id]; ok {
			refs = append(refs, r)
		}
	}
	slices.SortFunc(refs, func(a, b store.CommandRef) int { return cmp.Compare(a.CommandID, b.CommandID) })
	return refs, nil
}

func (s *fakeStore) ApplyReportingChanges(_ context.Context, items []ingest.Item) ([]ingest.Result, error) {
	res := make([]ingest.Result, len(items))
	for i, it := range items {
		res[i] = it.Result()
		if m, ok := it.Record.(*notification.Message); ok {
			res[i].Changed = s.mergeMessage(m)
			continue
		}
		if it.Notification() != nil {
			res[i].Changed = s.merge(it.Notification())
			s.mu.Lock()
			s.applied[it.Notification().CommandID]++
			s.mu.Unlock()
		}
	}
	return res, nil
}

func (s *fakeStore) TryLock(context.Context, string) (func(), bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.locked {
		return nil, false, nil
	}
	s.locked = true
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.locked = false
	}, true, nil
}

func (s *fakeStore) StuckHorizon(context.Context) (time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.horizon, nil
}

// mergeMessage applies m to its row by the rule's outline (a final status
// outranks PENDING, then the later event), and reports whether it changed.
func (s *fakeStore) mergeMessage(m *notification.Message) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := [2]string{m.DeviceID, m.MessageID}
	old, ok := s.msgs[k]
	oldRank, _ := old.Status.Rank()
	if ok && (m.Rank() < oldRank || m.Rank() == oldRank && !m.EventTime.After(old.LastEventTime)) {
		return false
	}
	s.writes++
	s.msgs[k] = store.MessageRef{DeviceID: m.DeviceID, MessageID: m.MessageID, Status: m.Status, LastEventTime: m.EventTime,
		UpdatedAt: time.Unix(s.writes, 0)}
	return true
}

func (s *fakeStore) message(device, id string) store.MessageRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.msgs[[2]string{device, id}]
}

// StuckMessages is stuck_messages(quiet): PENDING, quiet for longer than
// q.Quiet, within the horizon; oldest first.
func (s *fakeStore) StuckMessages(_ context.Context, q store.StuckMessageQuery) ([]store.MessageRef, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down != nil {
		return nil, s.down
	}
	now := time.Now()
	var page []store.MessageRef
	for _, r := range s.msgs {
		switch {
		case r.Status != notification.MessagePending, !r.LastEventTime.Before(now.Add(-q.Quiet)),
			!r.LastEventTime.After(now.Add(-s.horizon)),
			q.After != nil && compareMessages(r, *q.After) <= 0:
			continue
		}
		page = append(page, r)
	}
	slices.SortFunc(page, compareMessages)
	return page[:min(len(page), q.Limit)], nil
}

func compareMessages(a, b store.MessageRef) int {
	return cmp.Or(a.LastEventTime.Compare(b.LastEventTime), cmp.Compare(a.DeviceID, b.DeviceID), cmp.Compare(a.MessageID, b.MessageID))
}

func (s *fakeStore) Message(_ context.Context, device, id string) (store.MessageRef, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down != nil {
		return store.MessageRef{}, false, s.down
	}
	r, ok := s.msgs[[2]string{device, id}]
	return r, ok, nil
}
