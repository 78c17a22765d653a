package config

import (
	"strings"
	"testing"
)

func TestLogBlock(t *testing.T) {
	const head = "name: r\nendpoint: /r\ntasks:\n  m: {type: http, inputs: {address: 'http://m/p'}}\n"
	ok := func(src string, sample float64, features bool) *Log {
		t.Helper()
		r, err := Parse("r.yaml", []byte(head+src))
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if r.Log.SampleRate() != sample || r.Log.LogsFeatures() != features {
			t.Fatalf("%s: sample %v features %v", src, r.Log.SampleRate(), r.Log.LogsFeatures())
		}
		return r.Log
	}
	ok("", 1, true)
	l := ok("log: {sample: 0.1, sticky: '{{ .request.user.id }}', request: true, features: false, outputs: [response.body.score, response.headers.X-Model, response.status]}\n", 0.1, false)
	if !l.Request || l.Sticky.Value != "{{ .request.user.id }}" || len(l.Outputs) != 3 || l.Outputs[0].Pos.String() != "r.yaml:5:96" {
		t.Fatalf("log block %+v (first output at %s)", l, l.Outputs[0].Pos)
	}
	ok("log: {sample: 0}\n", 0, true)

	bad := func(src, want string) {
		t.Helper()
		_, err := Parse("r.yaml", []byte(head+src))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: got %v, want %q", src, err, want)
		}
	}
	bad("log: {sample: 1.5}\n", "r.yaml:5:6: log.sample must be between 0 and 1, got 1.5")
	bad("log: {sample: -0.1}\n", "r.yaml:5:6: log.sample must be between 0 and 1")
	bad("log: {sampel: 0.5}\n", `r.yaml:5:7: unknown key "sampel"`)
	bad("log: {sample: lots}\n", "r.yaml:5:15:")
	bad("log: {outputs: [response.score]}\n", `r.yaml:5:17: log.outputs: output path "response.score" must be`)
	bad("log: {outputs: [response.body]}\n", "r.yaml:5:17: log.outputs: name fields of the body")
	bad("log: {features: maybe}\n", "r.yaml:5:17:")
	bad("log: [1]\n", "r.yaml:5:6:")
}
