package notification

import (
	"reflect"
	"testing"
)

// stampSeeds are times in and around the shapes parseStamp reads.
var stampSeeds = []string{
	"20151212T121212Z", "19700101T000000Z", "20991231T235959Z", "21000101T000000Z", "19691231T235959Z",
	"20240229T120000Z", "20230229T120000Z", "21000229T000000Z", "20000229T000000Z", "20151312T121212Z",
	"20151200T121212Z", "20151232T121212Z", "20151212T241212Z", "20151212T126012Z", "20151212T121260Z",
	"2015121xT121212Z", "20151212t121212Z", "20151212T121212z", "+0151212T121212Z", "2015-1212T121212Z",
	"2019-03-03T08:10:11.000Z", "2019-03-03T08:10:11Z", "2019-03-03T08:10:11.5Z", "2019-03-03T08:10:11.Z",
	"2019-03-03T08:10:11.123456789Z", "2019-03-03T08:10:11.1234567891234Z", "2019-03-03T08:10:11.9999999Z",
	"2019-03-03T16:10:11.123+08:00", "2019-03-03T08:10:11.123+00:00", "2019-03-03t08:10:11Z",
	"2019-03-03T08:10:11z", "2019-3-03T08:10:11Z", "2019-03-03T8:10:11Z", "2019-03-03 08:10:11Z",
	"2019-02-29T08:10:11Z", "2020-02-29T08:10:11Z", "1969-12-31T23:59:59.9999999Z", "2099-12-31T23:59:59.999999999Z",
	"2100-01-01T00:00:00Z", "0000-01-01T00:00:00Z", "2019-03-03T08:10:11.-1Z", "2019-03-03T08:10:11.1.2Z",
	"2019-03-03T08:10:11,5Z", "", "Z", "now", "1551600611000",
}

func TestParseStamp(t *testing.T) {
	t.Parallel()
	for _, s := range stampSeeds {
		checkStamp(t, s)
	}
	// The shapes IoTDA writes must take the fast path.
	for _, s := range []string{"20151212T121212Z", "2019-03-03T08:10:11.000Z", "2019-03-03T08:10:11Z"} {
		_, ok := parseStamp(s)
		if !ok {
			t.Errorf("parseStamp(%q) left it to time.Parse", s)
		}
	}
}

func FuzzParseStamp(f *testing.F) {
	for _, s := range stampSeeds {
		f.Add(s)
	}
	f.Fuzz(checkStamp)
}

// checkStamp fails t if parseStamp takes s and time.Parse reads it
// otherwise (or not at all).
func checkStamp(t *testing.T, s string) {
	got, ok := parseStamp(s)
	gotBytes, okBytes := parseStamp([]byte(s))
	if ok != okBytes || got != gotBytes {
		t.Fatalf("parseStamp(%q) = %v, %v; as bytes %v, %v", s, got, ok, gotBytes, okBytes)
	}
	if !ok {
		return
	}
	want, err := parseTimeStd(s)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("parseStamp(%q) = %v, time.Parse: %v, %v", s, got, want, err)
	}
}
