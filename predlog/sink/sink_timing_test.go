package sink

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/predlog"
)

// BenchmarkSinks measures the writer side of one record shaped like the
// fan-out-2 route's (two tasks, one output): into a file:// sink, and
// encoded as the JSON a kafka:// sink produces.
func BenchmarkSinks(b *testing.B) {
	rec := func(i int) *predlog.Record {
		return &predlog.Record{RequestID: fmt.Sprintf("%032x", i), Time: time.Now(), Route: "fanout2", RouteVersion: "a1b2c3d4e5f6", Status: 200, LatencyMs: 0.4,
			Tasks: []predlog.Task{
				{Name: "m1", Kind: "http", Status: predlog.TaskOK, Code: 200, LatencyMs: 0.2},
				{Name: "m2", Kind: "http", Status: predlog.TaskOK, Code: 200, LatencyMs: 0.2},
			},
			Outputs: []predlog.Output{{Path: "response.body.m1.score", Value: "0.91"}},
		}
	}
	b.Run("file", func(b *testing.B) {
		s, err := NewFileSink("file://"+b.TempDir(), predlog.Options{})
		if err != nil {
			b.Fatal(err)
		}
		batch := make([]*predlog.Record, 256)
		for i := range batch {
			batch[i] = rec(i)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for done := 0; done < b.N; done += len(batch) {
			n := min(len(batch), b.N-done)
			if _, err := s.Write(batch[:n]); err != nil {
				b.Fatal(err)
			}
			if done%(64*len(batch)) == 0 {
				if _, err := s.Flush(); err != nil {
					b.Fatal(err)
				}
			}
		}
		if _, err := s.Close(); err != nil {
			b.Fatal(err)
		}
	})
	b.Run("json", func(b *testing.B) {
		r := rec(1)
		var buf []byte
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			buf = r.AppendJSON(buf[:0])
		}
	})
}

// BenchmarkServe measures the sink process's side of one record: decoding
// its JSON line and writing it into a file:// sink, with a write command
// every 256 records and a flush every 64 writes.
func BenchmarkServe(b *testing.B) {
	r := &predlog.Record{RequestID: fmt.Sprintf("%032x", 1), Time: time.Now(), Route: "fanout2", RouteVersion: "a1b2c3d4e5f6", Status: 200, LatencyMs: 0.4,
		Tasks: []predlog.Task{
			{Name: "m1", Kind: "http", Status: predlog.TaskOK, Code: 200, LatencyMs: 0.2},
			{Name: "m2", Kind: "http", Status: predlog.TaskOK, Code: 200, LatencyMs: 0.2},
		},
		Outputs: []predlog.Output{{Path: "response.body.m1.score", Value: "0.91"}},
	}
	line := append(r.AppendJSON(nil), '\n')
	// The input is made as Serve reads it, not held in memory.
	var batch bytes.Buffer
	for range 256 {
		batch.Write(line)
	}
	batch.WriteString(predlog.CmdWrite + "\n")
	var flush bytes.Buffer
	flush.Write(batch.Bytes())
	flush.WriteString(predlog.CmdFlush + "\n")
	var readers []io.Reader
	for done := 0; done < b.N; done += 256 {
		if (done/256+1)%64 == 0 {
			readers = append(readers, bytes.NewReader(flush.Bytes()))
		} else {
			readers = append(readers, bytes.NewReader(batch.Bytes()))
		}
	}
	readers = append(readers, strings.NewReader(predlog.CmdClose+"\n"))
	s, err := NewFileSink("file://"+b.TempDir(), predlog.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	if err := Serve(s, io.MultiReader(readers...), io.Discard); err != nil {
		b.Fatal(err)
	}
}
