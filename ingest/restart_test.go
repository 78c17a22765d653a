package ingest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/internal/redistest"
)

// TestLoadRidesThroughRedisRestart: Redis (with its append-only file, as
// production runs it) restarts while a load writes. The load waits for
// it, writes every row once Redis is back and ends without an error.
func TestLoadRidesThroughRedisRestart(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	r := connectRedis(t, srv)
	v := testViews(t)
	s := testSchema(t, v, "driver_stats")
	const rows = 40_000
	var b strings.Builder
	b.WriteString(statsHeader)
	for i := 1; i <= rows; i++ {
		fmt.Fprintf(&b, "%d,2026-05-01T10:00:00Z,0.5,0.5,3,4.5,sedan,true\n", i)
	}
	p := writeFile(t, "x.csv", b.String())

	var counters Counters
	restarted := make(chan struct{})
	var atStop int64
	go func() {
		defer close(restarted)
		for range 10_000 {
			if counters.Written.Load() >= rows/10 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		srv.Stop()
		atStop = counters.Written.Load()
		time.Sleep(500 * time.Millisecond)
		srv.Restart()
	}()
	st, err := load(t, r, s, p, LoadOptions{Counters: &counters})
	<-restarted
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if atStop >= rows {
		t.Fatalf("Redis stopped after the load wrote every row")
	}
	if st.Read != rows || st.Written+st.Skipped != rows || st.Rejected != 0 {
		t.Fatalf("read %d, written %d, skipped %d, rejected %d", st.Read, st.Written, st.Skipped, st.Rejected)
	}
	n, err := r.c.Do(context.Background(), r.c.B().Dbsize().Build()).AsInt64()
	if err != nil || n != rows {
		t.Fatalf("Redis holds %d rows (%v), want %d", n, err, rows)
	}
}
