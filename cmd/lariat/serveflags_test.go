package main

import (
	"maps"
	"runtime/debug"
	"strings"
	"testing"
)

func TestUpstreamPipelineFlag(t *testing.T) {
	f := func(values []string, want map[string]int, wantErr string) {
		t.Helper()
		var sf serverFlags
		sf.pipeline = values
		_, err := sf.resolveMap(nil)
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Fatalf("%q: got error %v, want %q", values, err, wantErr)
			}
			return
		}
		if err != nil {
			t.Fatalf("%q: %v", values, err)
		}
		if !maps.Equal(sf.upstream.Pipeline, want) {
			t.Fatalf("%q: got %v, want %v", values, sf.upstream.Pipeline, want)
		}
	}
	f(nil, nil, "")
	f([]string{"Model.svc:8080=2", "127.0.0.1:9001=1"}, map[string]int{"model.svc:8080": 2, "127.0.0.1:9001": 1}, "")
	f([]string{"model.svc=2"}, nil, `invalid --upstream-pipeline "model.svc=2": want HOST:PORT=N`)
	f([]string{"model.svc:80=0"}, nil, "N at least 1")
	f([]string{"model.svc:80"}, nil, "want HOST:PORT=N")
}

func TestGCPercentDefault(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	t.Setenv("GOGC", "")
	setGCPercent()
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Fatalf("GOGC unset: GC percent %d, want %d", got, defaultGCPercent)
	}
	t.Setenv("GOGC", "50")
	setGCPercent()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GOGC set: GC percent changed to %d", got)
	}
}
