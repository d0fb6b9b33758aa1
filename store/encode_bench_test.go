package store

import (
	"bytes"
	"cmp"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/cmdtrack/cmdtrack/internal/simulate"
	"github.com/cmdtrack/cmdtrack/notification"
)

// BenchmarkEncodeArgs encodes a batch's statement arguments as pgx does
// (binary), per batch of 256 notifications: the client's share of a write.
func BenchmarkEncodeArgs(b *testing.B) {
	s := simulate.GenerateN(simulate.Config{Seed: 9}, 256)
	rows := make([]noteRow, 0, 256)
	for _, m := range s.Messages {
		n, err := notification.Decode(m.Body)
		if err != nil {
			continue
		}
		rows = append(rows, noteRow{n: &n, source: "amqp:q", key: n.Key()})
	}
	m := pgtype.NewMap()
	oids := func(cols []column[noteRow]) []uint32 {
		out := make([]uint32, len(cols))
		for i, c := range cols {
			t, ok := m.TypeForName(c.typ + "[]")
			if !ok {
				t, _ = m.TypeForName("_" + c.typ)
			}
			out[i] = t.OID
		}
		return out
	}
	cmdOIDs, evOIDs := oids(commandColumns), oids(eventColumns)
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		for i, a := range args(commandColumns, rows) {
			var err error
			if buf, err = m.Encode(cmdOIDs[i], pgtype.BinaryFormatCode, a, buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
		for i, a := range args(eventColumns, rows) {
			var err error
			if buf, err = m.Encode(evOIDs[i], pgtype.BinaryFormatCode, a, buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkFold folds a batch of 256 notifications of the simulator's
// stream, sorted as the store sorts them: the Go share of joining a
// command's notifications before they are written.
func BenchmarkFold(b *testing.B) {
	s := simulate.GenerateN(simulate.Config{Seed: 9}, 256)
	rows := make([]noteRow, 0, 256)
	for _, m := range s.Messages {
		n, err := notification.Decode(m.Body)
		if err != nil {
			continue
		}
		rows = append(rows, noteRow{n: &n, source: "amqp:q", key: n.Key()})
	}
	slices.SortFunc(rows, func(a, b noteRow) int {
		return cmp.Or(strings.Compare(a.n.CommandID, b.n.CommandID), bytes.Compare(a.key, b.key))
	})
	b.ReportAllocs()
	var out []noteRow
	for b.Loop() {
		out = fold(rows)
	}
	b.ReportMetric(float64(len(rows)-len(out)), "folded/batch")
}
