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
	horizon time.Duration
	locked  bool
	// down, when set, is every read's error: the database is away.
	down error
}

var _ reconcile.Store = (*fakeStore)(nil)

func newFakeStore() *fakeStore {
	// cmdtrack_settings.stuck_horizon's default.
	return &fakeStore{rows: map[string]store.CommandRef{}, applied: map[string]int{}, horizon: 3 * 24 * time.Hour}
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
