package training

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestParseSpecRoundTrip checks that every accepted job spec survives a JSON round
// trip (the sidecar stores and serves specs as JSON), including zero values.
//
// This is not a fuzz target: the package links client-go, whose coverage
// counters make the fuzzing engine manage about one input per second.
func TestParseSpecRoundTrip(t *testing.T) {
	inputs := [][]byte{
		[]byte("name: 0\ncommand: [0]"),
		[]byte("name: a\ncommand: [x]\ntimeout: \"\"\n"),
		[]byte("name: a\ncommand: [x]\ntimeout: null\n"),
		[]byte(`{"name":"a","command":["x"],"timeout":"","kubernetes":{"backoff_limit":0},"kubeflow":{}}`),
	}
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, data)
	}
	for _, in := range inputs {
		s, err := ParseJobSpec("in", in)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		s2, err := ParseJobSpec("json", b)
		if err != nil {
			t.Fatalf("the JSON of %q is rejected: %v\n%s", in, err, b)
		}
		b2, _ := json.Marshal(s2)
		if string(b) != string(b2) {
			t.Fatalf("round trip changed the spec:\n%s\n%s", b, b2)
		}
	}
}
