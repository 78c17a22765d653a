package main

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// discardWriter is a ResponseWriter that keeps nothing, so the benchmark measures
// the handler.
type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }
func (w *discardWriter) Write(b []byte) (int, error) { w.n += len(b); return len(b), nil }

func benchmarkPredict(b *testing.B, path string, body []byte) {
	s := newServer(testArtifact(), "", "7")
	w := &discardWriter{h: http.Header{}}
	req, err := http.NewRequest("POST", path, nil)
	if err != nil {
		b.Fatal(err)
	}
	rd := bytes.NewReader(body)
	req.Body = io.NopCloser(rd)
	// Check once that the handler answers 200.
	s.ServeHTTP(w, req)
	if w.status != 200 {
		b.Fatalf("status %d", w.status)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for b.Loop() {
		rd.Reset(body)
		s.ServeHTTP(w, req)
	}
}

func driversBody(n int) []byte {
	var sb strings.Builder
	sb.WriteString(`{"drivers":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"driver_id":` + strconv.Itoa(1000+i) + `,"conv_rate":0.` + strconv.Itoa(100+i) + `,"acc_rate":0.5,"rating":4.` + strconv.Itoa(i%10) + `,"vehicle_type":"sedan"}`)
	}
	sb.WriteString(`]}`)
	return []byte(sb.String())
}

// BenchmarkPredictRanking: a route's model call, 20 drivers with their features.
func BenchmarkPredictRanking(b *testing.B) {
	benchmarkPredict(b, "/predict", driversBody(20))
}

// BenchmarkInferV2: one [20, 2] tensor.
func BenchmarkInferV2(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"inputs":[{"name":"features","shape":[20,2],"datatype":"FP32","data":[`)
	for i := 0; i < 20; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`0.5,4.` + strconv.Itoa(i%10))
	}
	sb.WriteString(`]}]}`)
	benchmarkPredict(b, "/v2/models/driver-rank/infer", []byte(sb.String()))
}
