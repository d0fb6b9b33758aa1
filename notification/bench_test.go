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
