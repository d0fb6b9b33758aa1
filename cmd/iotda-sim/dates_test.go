package main

import (
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/notification"
)

// The README's tour: `iotda-sim publish -queue /queue/cmdtrack -commands
// 1000`, then the console. Without -start the stream lies in the console's
// last 24 hours, with commands stuck; -start gives the fixed dates the
// tests and benchmarks use, the same whenever it runs.
func TestPublishDatesTheStreamJustBeforeNow(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 7, 9, 30, 15, 0, time.Local)
	stuck := func(s *simulate.Stream) (n int) {
		for _, c := range s.Commands {
			if (c.Status == notification.Sent || c.Status == notification.Delivered) && now.Sub(c.LastEventTime) > 10*time.Minute {
				n++
			}
		}
		return n
	}
	for _, args := range [][]string{
		{"-queue", "/queue/cmdtrack", "-commands", "1000"},
		{"-queue", "/queue/cmdtrack", "-messages", "3000", "-presence"},
	} {
		p, err := parsePublish(args, io.Discard)
		require.NoError(t, err)
		s, msgs := p.stream(now)
		require.NotEmpty(t, msgs)
		for _, c := range s.Commands {
			require.Truef(t, c.CreatedTime.After(now.Add(-24*time.Hour)) && c.LastEventTime.Before(now),
				"%v: %s created %s, last moved %s: not within the 24 hours before %s", args, c.ID, c.CreatedTime, c.LastEventTime, now)
		}
		require.Greater(t, stuck(s), 10, args)
	}

	for _, start := range []string{"2026-11-01T00:00:00Z", "2026-11-01", "2026-11-01T08:00:00+08:00"} {
		p, err := parsePublish([]string{"-commands", "1000", "-start", start}, io.Discard)
		require.NoError(t, err)
		s, _ := p.stream(now)
		fixed := simulate.Generate(simulate.Config{Commands: 1000, Seed: 1, Products: 3})
		require.Equal(t, fixed.Messages, s.Messages, "-start %s gives the fixed-date stream", start)
		require.Equal(t, simulate.FixedStart, s.Commands[0].CreatedTime)
	}
	_, err := parsePublish([]string{"-start", "yesterday"}, io.Discard)
	require.ErrorContains(t, err, `want RFC 3339 (2026-11-01T00:00:00Z) or a day (2026-11-01), got "yesterday"`)
}
