package simulate

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
)

// WriteExpected writes the expected final state of every command as JSON
// lines, one Command per line, in the order given.
func WriteExpected(w io.Writer, cmds []Command) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	enc := json.NewEncoder(bw)
	for i := range cmds {
		if err := enc.Encode(&cmds[i]); err != nil {
			return fmt.Errorf("write expected state of %s: %w", cmds[i].ID, err)
		}
	}
	return bw.Flush()
}

// ReadExpected reads what WriteExpected wrote. Blank lines are ignored.
func ReadExpected(r io.Reader) ([]Command, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<16), 16<<20)
	var cmds []Command
	for line := 1; sc.Scan(); line++ {
		b := sc.Bytes()
		if len(b) == 0 {
			continue
		}
		var c Command
		if err := json.Unmarshal(b, &c); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if c.ID == "" {
			return nil, fmt.Errorf("line %d: no command_id", line)
		}
		cmds = append(cmds, c)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return cmds, nil
}

// GenerateN makes a stream of exactly n messages (cfg.Commands is ignored):
// it takes the fewest commands whose stream reaches n messages and, if that
// overshoots, drops a few of the later copies of duplicated (or else
// foreign) messages, which changes no command's expected state. When
// neither is available to drop, the stream keeps its few extra messages
// (at most one command's worth); check len(Messages).
// The same Config and n give the same stream.
func GenerateN(cfg Config, n int) *Stream {
	if n < 1 {
		return &Stream{}
	}
	// Commands are drawn first and in order from one generator, so the
	// first c commands of a larger stream are those of a stream of c
	// commands: one trial run tells how many messages any prefix makes.
	trial := cfg
	trial.Commands = n/3 + 16
	if cfg.MessageShare > 0 {
		// A message may make a single notification.
		trial.Commands = n + 16
	}
	if cfg.Devices < 1 {
		// The default device count depends on Commands; pin it so that the
		// trial and the final stream draw the same devices.
		cfg.Devices = max(1, (n/4+4)/4)
		trial.Devices = cfg.Devices
	}
	s := Generate(trial)
	valid, commands := 0, len(s.downlinks)
	for i, d := range s.downlinks {
		valid += d
		if total(cfg, valid) >= n {
			commands = i + 1
			break
		}
	}
	cfg.Commands = commands
	s = Generate(cfg)
	trim(s, s.Published-n)
	return s
}

// total is how many messages Generate makes for valid notifications.
func total(cfg Config, valid int) int {
	round := func(f float64) int { return int(math.Floor(f + 0.5)) }
	poison := round(cfg.Poison * float64(valid))
	foreign := round(cfg.Foreign * float64(valid))
	all := valid + poison + foreign
	return all + round(cfg.Duplicate*float64(all))
}

// trim drops up to excess messages that change no expected state: the last
// copies of duplicated bodies, then foreign messages.
func trim(s *Stream, excess int) {
	if excess <= 0 {
		return
	}
	seen := make(map[*byte]int, len(s.Messages))
	for _, m := range s.Messages {
		if len(m.Body) > 0 {
			seen[&m.Body[0]]++
		}
	}
	drop := make([]bool, len(s.Messages))
	for i := len(s.Messages) - 1; i >= 0 && excess > 0; i-- {
		m := s.Messages[i]
		if len(m.Body) > 0 && seen[&m.Body[0]] > 1 {
			seen[&m.Body[0]]--
			drop[i] = true
			excess--
		}
	}
	for i := len(s.Messages) - 1; i >= 0 && excess > 0; i-- {
		if !drop[i] && s.Messages[i].Kind == Foreign && seen[&s.Messages[i].Body[0]] == 1 {
			drop[i] = true
			s.Foreign--
			excess--
		}
	}
	kept := s.Messages[:0]
	for i, m := range s.Messages {
		if !drop[i] {
			kept = append(kept, m)
		}
	}
	clear(s.Messages[len(kept):])
	s.Messages = kept
	s.Published = len(kept)
}
