package notification_test

import (
	"testing"
	"time"

	"github.com/cmdtrack/cmdtrack/notification"
)

func BenchmarkDecode(b *testing.B) {
	body := readTestdata(b, "seed000.json")
	if _, err := notification.Decode(body); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := notification.Decode(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkKey(b *testing.B) {
	n, err := notification.Decode(readTestdata(b, "seed000.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = n.Key()
	}
}

// BenchmarkDecodeStd is the encoding/json decoder alone: the path of every
// body the fast path leaves to it.
func BenchmarkDecodeStd(b *testing.B) {
	body := readTestdata(b, "seed000.json")
	at := time.Now()
	if _, err := notification.DecodeStd(body, at); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := notification.DecodeStd(body, at); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodePresence(b *testing.B) {
	body := readTestdata(b, presenceShapes[0])
	if _, err := notification.DecodePresence(body); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := notification.DecodePresence(body); err != nil {
			b.Fatal(err)
		}
	}
}
