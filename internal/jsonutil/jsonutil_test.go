package jsonutil

import (
	"encoding/json"
	"testing"
)

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	f := func(s string) {
		t.Helper()
		want, _ := json.Marshal(s)
		got := AppendString(nil, s)
		if string(got) != string(want) {
			t.Fatalf("AppendString(%q) = %s, want %s", s, got, want)
		}
	}
	f("")
	f("plain")
	f(`quote " and \ backslash`)
	f("tab\tnl\ncr\r\x00\x1f")
	f("backspace\b formfeed\f")
	f("<html>&amp;")
	f("héllo ☃")
	f("bad \xff utf8")
	f("line\u2028sep\u2029")
}

func FuzzAppendString(f *testing.F) {
	f.Add("hello")
	f.Add("\xff\x00\"")
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := AppendString(nil, s); string(got) != string(want) {
			t.Fatalf("AppendString(%q) = %s, want %s", s, got, want)
		}
	})
}

func TestDepthExceeds(t *testing.T) {
	f := func(s string, max int, want bool) {
		t.Helper()
		if got := DepthExceeds([]byte(s), max); got != want {
			t.Fatalf("DepthExceeds(%q, %d) = %v", s, max, got)
		}
	}
	f(`{}`, 1, false)
	f(`{"a":[1]}`, 1, true)
	f(`{"a":[1]}`, 2, false)
	f(`{"a":"[[[[{{{{"}`, 1, false)
	f(`{"a":"\\"}`, 1, false)
	f(`{"a":"\"[["}`, 1, false)
	f(`[[[[[[[[[[]]]]]]]]]]`, 9, true)
}
