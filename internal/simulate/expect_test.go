package simulate_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/simulate"
)

func TestGenerateNIsExactAndReproducible(t *testing.T) {
	t.Parallel()
	sizes := []int{1, 7, 1000, 4321}
	if testing.Short() {
		// The long stream costs seconds under the race detector and shows
		// nothing the shorter ones do not (make test runs it).
		sizes = sizes[:3]
	}
	for _, cfg := range []simulate.Config{
		{Seed: 1, OutOfOrder: 0.1, Duplicate: 0.02, Poison: 0.001},
		{Seed: 2, OutOfOrder: 1, Duplicate: 0.2, Poison: 0.05, Foreign: 0.05},
		{Seed: 3},
	} {
		for _, n := range sizes {
			s := simulate.GenerateN(cfg, n)
			if (cfg.Duplicate > 0 || cfg.Foreign > 0) && n >= 1000 {
				require.Len(t, s.Messages, n, "cfg %+v", cfg)
			} else {
				// Maybe nothing to trim: at most one command's worth too many.
				require.GreaterOrEqual(t, len(s.Messages), n)
				require.Less(t, len(s.Messages), n+4)
			}
			require.Equal(t, len(s.Messages), s.Published)
			// Every command's notifications are all there.
			perCommand := map[string]map[string]bool{}
			for _, m := range s.Messages {
				if m.Kind == simulate.Valid {
					if perCommand[m.CommandID] == nil {
						perCommand[m.CommandID] = map[string]bool{}
					}
					perCommand[m.CommandID][string(m.Body)] = true
				}
			}
			require.Len(t, perCommand, len(s.Commands))
			for _, c := range s.Commands {
				require.Len(t, perCommand[c.ID], c.Events, c.ID)
			}
			again := simulate.GenerateN(cfg, n)
			require.Len(t, again.Messages, len(s.Messages))
			for i := range s.Messages {
				require.Equal(t, s.Messages[i].Body, again.Messages[i].Body)
			}
		}
	}
}

func TestGenerateNPrefixMatchesGenerate(t *testing.T) {
	cfg := simulate.Config{Seed: 9, Devices: 50, Duplicate: 0.05}
	s := simulate.GenerateN(cfg, 2000)
	cfg.Commands = len(s.Commands)
	full := simulate.Generate(cfg)
	require.Equal(t, full.Commands, s.Commands)
}

func TestExpectedRoundTrip(t *testing.T) {
	s := simulate.Generate(simulate.Config{Commands: 300, Seed: 4})
	var buf bytes.Buffer
	require.NoError(t, simulate.WriteExpected(&buf, s.Commands))
	require.Equal(t, len(s.Commands), bytes.Count(buf.Bytes(), []byte("\n")))
	got, err := simulate.ReadExpected(&buf)
	require.NoError(t, err)
	require.Len(t, got, len(s.Commands))
	for i := range got {
		w, g := s.Commands[i], got[i]
		require.Equal(t, w.ID, g.ID)
		require.Equal(t, w.Status, g.Status)
		require.True(t, w.CreatedTime.Equal(g.CreatedTime))
		require.True(t, w.LastEventTime.Equal(g.LastEventTime))
		require.Equal(t, w.SentTime == nil, g.SentTime == nil)
		require.Equal(t, w.Events, g.Events)
		if len(w.Result) > 0 {
			require.JSONEq(t, string(w.Result), string(g.Result))
		} else {
			require.Empty(t, g.Result)
		}
	}
	_, err = simulate.ReadExpected(bytes.NewReader([]byte("{\"status\":\"SENT\"}\n")))
	require.ErrorContains(t, err, "no command_id")
	_, err = simulate.ReadExpected(bytes.NewReader([]byte("not json\n")))
	var syntax *json.SyntaxError
	require.ErrorAs(t, err, &syntax)
}
