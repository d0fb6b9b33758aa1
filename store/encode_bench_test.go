package store

import (
	"bytes"
	"cmp"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/cmdtrack/cmdtrack/ingest"
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
		out = commandFold.fold(rows)
	}
	b.ReportMetric(float64(len(rows)-len(out)), "folded/batch")
}

// BenchmarkQueueKinds is the worker's client share of writing a batch of
// 256 notifications of one kind, as Apply does it with the outcome
// tracking the worker turns on: each record's key, the writer's sort,
// fold or rounds, and every queued argument encoded as pgx sends it. A
// device message must cost no more than a command (issue 28).
func BenchmarkQueueKinds(b *testing.B) {
	for _, c := range []struct {
		name  string
		share float64
	}{{"commands", 0}, {"messages", 1}} {
		s := simulate.GenerateN(simulate.Config{Seed: 9, MessageShare: c.share, OutOfOrder: 0.1, Duplicate: 0.02}, 256)
		var items []ingest.Item
		for _, m := range s.Messages {
			if it := ingest.Classify(m.Body, "amqp:q", time.Now(), ingest.Limits{MaxBodyBytes: 1 << 20}); it.Record != nil {
				items = append(items, it)
			}
		}
		b.Run(c.name, func(b *testing.B) {
			m := pgtype.NewMap()
			// The arguments' types, as each statement casts them, looked up
			// once per statement.
			param := regexp.MustCompile(`\$(\d+)::(\w+)\[\]`)
			oids := map[string][]uint32{}
			oidsOf := func(sql string) []uint32 {
				if o, ok := oids[sql]; ok {
					return o
				}
				var o []uint32
				for _, p := range param.FindAllStringSubmatch(sql, -1) {
					i, _ := strconv.Atoi(p[1])
					t, ok := m.TypeForName("_" + p[2])
					if !ok {
						b.Fatalf("%.60q: no type %q", sql, p[2])
					}
					o = append(o, make([]uint32, max(0, i-len(o)))...)
					o[i-1] = t.OID
				}
				oids[sql] = o
				return o
			}
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				batch := &pgx.Batch{}
				queueTracked(batch, items, nil, true, nil)
				for _, q := range batch.QueuedQueries {
					o := oidsOf(q.SQL)
					for i, a := range q.Arguments {
						var err error
						if buf, err = m.Encode(o[i], pgtype.BinaryFormatCode, a, buf[:0]); err != nil {
							b.Fatal(err)
						}
					}
				}
			}
			b.ReportMetric(float64(len(items)), "notes/batch")
		})
	}
}
