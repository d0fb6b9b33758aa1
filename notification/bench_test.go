package notification_test

import (
	"testing"

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
