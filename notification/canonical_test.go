package notification

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCanonical(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{`{"b":1,"a":2}`, `{"a":2,"b":1}`},
		{` { "a" : [ 1 , {"z":null,"y":true} ] , "b" : "x y" } `, `{"a":[1,{"y":true,"z":null}],"b":"x y"}`},
		{`[{"tag_value":"v","tag_key":"k"}]`, `[{"tag_key":"k","tag_value":"v"}]`},
		{`{"s":"q\"}{,"}`, `{"s":"q\"}{,"}`},
		{`{}`, `{}`},
		{`[]`, `[]`},
		{`-1.5e3`, `-1.5e3`},
		{`{"b":{"d":1,"c":2},"a":0}`, `{"a":0,"b":{"c":2,"d":1}}`},
	} {
		got := canonical([]byte(c.in))
		require.Equal(t, c.want, string(got), c.in)
		require.True(t, json.Valid(got))
		require.Equal(t, c.want, string(canonical(got)), "idempotent")
	}
	require.Equal(t, `{"a":`, string(canonical([]byte(`{"a":`))), "invalid JSON comes back as is")
}

func FuzzCanonical(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":[2,{"d":3,"c":"x"}]}`, `[1,2]`, `"s"`, `{"a":{"a":{}}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if !json.Valid(in) {
			return
		}
		out := canonical(in)
		if !json.Valid(out) {
			t.Fatalf("canonical(%q) = %q, not JSON", in, out)
		}
		if again := canonical(out); string(again) != string(out) {
			t.Fatalf("not idempotent: %q then %q", out, again)
		}
		var a, b any
		if json.Unmarshal(in, &a) == nil && json.Unmarshal(out, &b) == nil {
			ja, _ := json.Marshal(a)
			jb, _ := json.Marshal(b)
			if string(ja) != string(jb) {
				t.Fatalf("meaning changed: %q -> %q", in, out)
			}
		}
	})
}
