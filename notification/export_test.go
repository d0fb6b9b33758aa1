package notification

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"sync/atomic"
	"testing"
	"time"
)

// Every DecodeAt in this package's tests (the decoder tests, FuzzDecode and
// its corpus, the differential tests) also runs decodeStd and panics if the
// fast path answered differently. Benchmarks measure DecodeAt as it runs in
// production, without the check.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		checkFast = mustAgree
	}
	code := m.Run()
	if testing.Verbose() {
		fmt.Printf("DecodeAt: %d answered by the fast path, %d left to encoding/json\n", fastSure.Load(), fastUnsure.Load())
	}
	os.Exit(code)
}

// fastSure and fastUnsure count the DecodeAt calls the fast path answered
// and those it left to decodeStd.
var fastSure, fastUnsure atomic.Int64

func mustAgree(body []byte, receivedAt time.Time, sure bool, n Notification, err error) {
	if !sure {
		fastUnsure.Add(1)
		return
	}
	fastSure.Add(1)
	want, wantErr := decodeStd(body, receivedAt)
	if diff := Disagreement(n, err, want, wantErr); diff != "" {
		panic(fmt.Sprintf("decodeFast disagrees with decodeStd on %q: %s", body, diff))
	}
}

// DecodeStd is the encoding/json decoder alone.
func DecodeStd(body []byte, receivedAt time.Time) (Notification, error) {
	return decodeStd(body, receivedAt)
}

// DecodeFast is the fast path alone: sure is false when it would leave body
// to encoding/json.
func DecodeFast(body []byte) (n Notification, sure bool, err error) {
	sure, err = decodeFast(body, &n)
	return n, sure, err
}

// KeyV0 is Key as it was first stored (key_v0_test.go).
func KeyV0(n *Notification) []byte { return keyV0(n) }

// Disagreement says how two decodings differ, or is "" when they agree on
// the error (type, class, reason, resource and event), on every field of
// the notification, and on its key, also as keyV0 computes it.
func Disagreement(got Notification, gotErr error, want Notification, wantErr error) string {
	var gotSkip, wantSkip *SkipError
	var gotBad, wantBad *Error
	switch {
	case (gotErr == nil) != (wantErr == nil):
		return fmt.Sprintf("error %v, want %v", gotErr, wantErr)
	case errors.As(gotErr, &gotSkip) != errors.As(wantErr, &wantSkip),
		errors.As(gotErr, &gotBad) != errors.As(wantErr, &wantBad):
		return fmt.Sprintf("error %T %v, want %T %v", gotErr, gotErr, wantErr, wantErr)
	case gotSkip != nil && *gotSkip != *wantSkip:
		return fmt.Sprintf("skip %+v, want %+v", *gotSkip, *wantSkip)
	case gotBad != nil && *gotBad != *wantBad:
		return fmt.Sprintf("error %+v, want %+v", *gotBad, *wantBad)
	case !reflect.DeepEqual(got, want):
		return fmt.Sprintf("notification\n%+v\nwant\n%+v", got, want)
	}
	for _, k := range [][]byte{got.Key(), keyV0(&got), keyV0(&want)} {
		if !bytes.Equal(k, want.Key()) {
			return fmt.Sprintf("key %x, want %x", k, want.Key())
		}
	}
	return ""
}
