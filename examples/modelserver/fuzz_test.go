package main

import (
	"testing"
)

// FuzzHandlers sends arbitrary bodies to the prediction endpoints: no panics, and
// every answer is 200 or a JSON error.
func FuzzHandlers(f *testing.F) {
	f.Add(`{"instances":[{"conv_rate":1,"rating":3}]}`)
	f.Add(`{"drivers":[{"driver_id":1,"conv_rate":0.1},{"driver_id":"x","rating":null}]}`)
	f.Add(`{"inputs":[{"name":"features","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4]]}]}`)
	f.Add(`{"inputs":[{"name":"rating","shape":[1,1],"datatype":"FP64","data":[1]},{"name":"conv_rate","shape":[1],"datatype":"BOOL","data":[true]}]}`)
	f.Add(`{"inputs":[{"name":"x","shape":[1e10,2],"datatype":"FP32","data":[]}]}`)
	s := newServer(testArtifact(), "", "1")
	f.Fuzz(func(t *testing.T, body string) {
		for _, path := range []string{"/predict", "/v2/models/driver-rank/infer", "/v1/models/driver-rank:predict"} {
			a := call(t, s, "POST", path, body)
			if a.status != 200 && (a.body == "" || a.body[0] != '{') {
				t.Fatalf("%s %q: %d %q", path, body, a.status, a.body)
			}
		}
	})
}
