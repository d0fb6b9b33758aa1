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
		checkFastMessage = mustAgreeMessage
	}
	code := m.Run()
	if testing.Verbose() {
		fmt.Printf("DecodeAt: %d answered by the fast path, %d left to encoding/json\n", fastSure.Load(), fastUnsure.Load())
		fmt.Printf("DecodeMessage: %d answered by the fast path, %d left to encoding/json\n", fastMessageSure.Load(), fastMessageUnsure.Load())
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

// fastMessageSure and fastMessageUnsure count the DecodeMessage calls the
// fast path answered and those it left to decodeMessageStd.
var fastMessageSure, fastMessageUnsure atomic.Int64

func mustAgreeMessage(body []byte, sure bool, m Message, err error) {
	if !sure {
		fastMessageUnsure.Add(1)
		return
	}
	fastMessageSure.Add(1)
	want, wantErr := decodeMessageStd(body)
	if diff := MessageDisagreement(m, err, want, wantErr); diff != "" {
		panic(fmt.Sprintf("decodeMessageFast disagrees with decodeMessageStd on %q: %s", body, diff))
	}
}

// DecodeMessageStd is the device message's encoding/json decoder alone.
func DecodeMessageStd(body []byte) (Message, error) { return decodeMessageStd(body) }

// DecodeMessageFast is the device message's fast path alone: sure is false
// when it would leave body to encoding/json.
func DecodeMessageFast(body []byte) (m Message, sure bool, err error) {
	sure, err = decodeMessageFast(body, &m)
	return m, sure, err
}

// MessageDisagreement is Disagreement for device messages: "" when the two
// decodings agree on the error, on every field and on the key.
func MessageDisagreement(got Message, gotErr error, want Message, wantErr error) string {
	if diff := errorDisagreement(gotErr, wantErr); diff != "" {
		return diff
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Sprintf("message\n%+v\nwant\n%+v", got, want)
	}
	if !bytes.Equal(got.Key(), want.Key()) {
		return fmt.Sprintf("key %x, want %x", got.Key(), want.Key())
	}
	return ""
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
	if diff := errorDisagreement(gotErr, wantErr); diff != "" {
		return diff
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Sprintf("notification\n%+v\nwant\n%+v", got, want)
	}
	for _, k := range [][]byte{got.Key(), keyV0(&got), keyV0(&want)} {
		if !bytes.Equal(k, want.Key()) {
			return fmt.Sprintf("key %x, want %x", k, want.Key())
		}
	}
	return ""
}

// errorDisagreement says how two decoders' errors differ (type, class,
// reason, resource and event), or is "" when they agree.
func errorDisagreement(gotErr, wantErr error) string {
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
	}
	return ""
}
