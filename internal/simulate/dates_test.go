package simulate_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/notification"
)

// streamDigest hashes every body of s in order and its expected states.
func streamDigest(t *testing.T, s *simulate.Stream) string {
	t.Helper()
	h := sha256.New()
	for _, m := range s.Messages {
		h.Write(m.Body)
		h.Write([]byte{0, byte(m.Kind)})
	}
	var buf bytes.Buffer
	require.NoError(t, simulate.WriteExpected(&buf, s.Commands))
	require.NoError(t, simulate.WriteExpectedPresence(&buf, s.Devices))
	h.Write(buf.Bytes())
	return hex.EncodeToString(h.Sum(nil))
}

// The fixed-date streams are the ones the tests and the benchmarks' figures
// were made with: dating the default stream near now must leave them byte
// for byte as they were. (The digests changed once since: when the commands'
// ids became UUIDs, as the platform's are, TestCommandIDsAreThePlatforms;
// nothing else of the streams changed, every body the same after the ids.)
func TestFixedDateStreamsUnchanged(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		s    *simulate.Stream
		want string
	}{
		{"Generate", simulate.Generate(simulate.Config{Commands: 400, Seed: 7, OutOfOrder: 0.3, Duplicate: 0.1,
			Poison: 0.05, Foreign: 0.05, Presence: true}), "a5c93ea1371c02b2940c1585f597eeb86c5451154ecd8d074f8741f3974cae40"},
		{"GenerateN", simulate.GenerateN(simulate.Config{Seed: 1, OutOfOrder: 0.1, Duplicate: 0.02, Poison: 0.001,
			Presence: true}, 1500), "a4215d1ca59b21b7a809e991397e5627a6165f5a4a58b8410403b326abeb1778"},
	} {
		require.Equal(t, c.want, streamDigest(t, c.s), c.name)
	}
}

// The README's tour publishes the default stream, dated just before now, and
// opens the console: its last 24 hours must be filled, some commands stuck
// (SENT or DELIVERED and quiet for more than the console's 10 minutes), and
// with presence some devices offline; the worker must take every message,
// none of them dated ahead of its receipt.
func TestRecentStreamFillsTheLastDay(t *testing.T) {
	t.Parallel()
	// Not in UTC: the bodies' stamps must still be.
	now := time.Date(2026, 12, 7, 17, 30, 15, 0, time.FixedZone("UTC+8", 8*3600))
	within := func(what func() string, at time.Time) {
		t.Helper()
		if !at.After(now.Add(-24*time.Hour)) || at.After(now) {
			require.Failf(t, "out of the last day", "%s %s is not within the 24 hours before %s", what(), at, now)
		}
	}
	named := func(a, b string) func() string { return func() string { return a + " " + b } }
	for _, c := range []struct {
		name string
		cfg  simulate.Config
		n    int // GenerateN's, else Generate
	}{
		{"tour", simulate.Config{Commands: 1000, Seed: 1, Presence: true, Now: now}, 0},
		{"messy", simulate.Config{Seed: 2, OutOfOrder: 0.1, Duplicate: 0.02, Poison: 0.01, Foreign: 0.01, Presence: true, Now: now}, 3000},
	} {
		gen := func() *simulate.Stream {
			if c.n > 0 {
				return simulate.GenerateN(c.cfg, c.n)
			}
			return simulate.Generate(c.cfg)
		}
		s := gen()
		if c.n == 0 {
			require.Equal(t, streamDigest(t, s), streamDigest(t, gen()), "%s: the same Config gives the same stream", c.name)
		}

		// The console's 24 hours start at the hour 23 hours before the
		// current one: the whole stream is in them for the next 55 minutes.
		windowFrom := now.Add(55 * time.Minute).Truncate(time.Hour).Add(-23 * time.Hour)
		hours := map[int]int{}
		stuck := 0
		for _, cmd := range s.Commands {
			within(named(cmd.ID, "created_time"), cmd.CreatedTime)
			require.Falsef(t, cmd.CreatedTime.Before(windowFrom), "%s: %s created %s, out of the console's 24 hours from %s",
				c.name, cmd.ID, cmd.CreatedTime, windowFrom)
			within(named(cmd.ID, "last_event_time"), cmd.LastEventTime)
			for _, at := range []*time.Time{cmd.SentTime, cmd.DeliveredTime, cmd.ResponseTime} {
				if at != nil {
					within(named(cmd.ID, "lifecycle time"), *at)
				}
			}
			hours[int(now.Sub(cmd.CreatedTime)/time.Hour)]++
			if (cmd.Status == notification.Sent || cmd.Status == notification.Delivered) && now.Sub(cmd.LastEventTime) > 10*time.Minute {
				stuck++
			}
		}
		for h := range 22 {
			require.Positivef(t, hours[h], "%s: no command created between %d and %d hours before now", c.name, h+1, h)
		}
		require.Greaterf(t, stuck, len(s.Commands)/50, "%s: stuck commands", c.name)

		offline := 0
		for _, d := range s.Devices {
			within(named(d.ID, "status_since"), d.StatusSince)
			if d.Status == notification.Offline {
				offline++
			}
		}
		require.Positivef(t, offline, "%s: offline devices", c.name)

		last := map[string]time.Time{}
		for _, m := range s.Messages {
			if m.Kind != simulate.Valid && m.Kind != simulate.PresenceChange {
				continue
			}
			it := ingest.Classify(m.Body, "test", now, ingest.Limits{MaxBodyBytes: 1 << 20})
			if it.DeadLetter != nil {
				require.Failf(t, "dead letter", "%s: %s: %s", c.name, it.DeadLetter.Reason, m.Body)
			}
			within(func() string { return string(m.Body) }, it.EventTime())
			if m.Kind == simulate.Valid && it.EventTime().After(last[m.CommandID]) {
				last[m.CommandID] = it.EventTime()
			}
		}
		// The expected state is what the bodies say, to their precision.
		for _, cmd := range s.Commands {
			require.Truef(t, last[cmd.ID].Equal(cmd.LastEventTime), "%s: %s: the bodies say last_event_time %s, the expected state %s",
				c.name, cmd.ID, last[cmd.ID], cmd.LastEventTime)
		}
	}
}
