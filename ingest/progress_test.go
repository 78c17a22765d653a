package ingest

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFormatProgress(t *testing.T) {
	f := func(s ProgressSnapshot, wantBar, wantLine string) {
		t.Helper()
		if got := FormatBar(s, 20); got != wantBar {
			t.Errorf("bar\n got %q\nwant %q", got, wantBar)
		}
		if got := FormatProgressLine(s); got != wantLine {
			t.Errorf("line\n got %q\nwant %q", got, wantLine)
		}
	}
	f(ProgressSnapshot{Read: 1000, Written: 900, Skipped: 90, Rejected: 10, Done: 250, Total: 1000, Elapsed: 2 * time.Second},
		"[=====>              ]  25.0%  1000 rows  500 rows/s  10 rejected  ETA 6s",
		"progress: 25.0% 1000 rows read, 900 written, 90 skipped, 10 rejected, 500 rows/s, ETA 6s")
	f(ProgressSnapshot{Read: 3, Written: 3, Done: 10, Total: 10, Elapsed: time.Second},
		"[====================] 100.0%  3 rows  3 rows/s  ETA 0s",
		"progress: 100.0% 3 rows read, 3 written, 0 skipped, 0 rejected, 3 rows/s, ETA 0s")
	// Unknown size (standard input): no percentage, no ETA.
	f(ProgressSnapshot{Read: 42, Written: 40, Done: 4096, Elapsed: 2 * time.Second},
		"42 rows  21 rows/s",
		"progress: 42 rows read, 40 written, 0 skipped, 0 rejected, 21 rows/s")
	// Nothing done yet.
	f(ProgressSnapshot{Total: 100},
		"[>                   ]   0.0%  0 rows  0 rows/s",
		"progress: 0.0% 0 rows read, 0 written, 0 skipped, 0 rejected, 0 rows/s")
}

// syncBuffer is a bytes.Buffer safe for the progress goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestProgressDuringLoad reports a real load in both modes; the final
// report, printed by Stop, shows the whole file done.
func TestProgressDuringLoad(t *testing.T) {
	r := startRedis(t)
	v := testViews(t)
	s := testSchema(t, v, "driver_stats")
	var sb strings.Builder
	sb.WriteString(statsHeader)
	for i := 0; i < 3000; i++ {
		fmt.Fprintf(&sb, "%d,2026-05-01T10:00:00Z,0.5,0.5,3,4.5,sedan,true\n", i)
	}
	sb.WriteString("x,2026-05-01T10:00:00Z,0.5,0.5,3,4.5,sedan,true\n")
	p := writeFile(t, "p.csv", sb.String())
	size := int64(sb.Len())

	for i, mode := range []ProgressMode{ProgressLines, ProgressBar} {
		var out syncBuffer
		c := new(Counters)
		prog := StartProgress(&out, mode, time.Millisecond, c)
		st, err := load(t, r, s, p, LoadOptions{Counters: c, BatchSize: 100})
		prog.Stop()
		prog.Stop() // idempotent
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			checkCounts(t, st, 3001, 3000, 0, 1)
		} else { // the same rows again: stored with the same event time
			checkCounts(t, st, 3001, 0, 3000, 1)
		}
		if c.Done.Load() != size || c.Total.Load() != size {
			t.Fatalf("done %d total %d, want the file size %d", c.Done.Load(), c.Total.Load(), size)
		}
		got := out.String()
		switch mode {
		case ProgressLines:
			lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
			for _, l := range lines {
				if !strings.HasPrefix(l, "progress: ") {
					t.Fatalf("line %q", l)
				}
			}
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "progress: 100.0% 3001 rows read, 3000 written, 0 skipped, 1 rejected, ") {
				t.Fatalf("last line %q", last)
			}
		case ProgressBar:
			if !strings.HasPrefix(got, "\r[") || !strings.HasSuffix(got, "\n") || strings.Count(got, "\n") != 1 {
				t.Fatalf("bar output %q", got)
			}
			frames := strings.Split(strings.TrimSuffix(got, "\n"), "\r")
			last := strings.TrimRight(frames[len(frames)-1], " ")
			if !strings.HasPrefix(last, "[==============================] 100.0%  3001 rows  ") || !strings.Contains(last, "  1 rejected  ETA 0s") {
				t.Fatalf("last frame %q", last)
			}
		}
	}
	// None prints nothing.
	var out syncBuffer
	StartProgress(&out, ProgressNone, time.Millisecond, new(Counters)).Stop()
	if out.String() != "" {
		t.Fatalf("none printed %q", out.String())
	}
}

func TestWriteSummary(t *testing.T) {
	st := &Stats{
		File: "data.csv", Read: 1000, Written: 990, Skipped: 5, Rejected: 5, Elapsed: 2 * time.Second,
		ByReason: map[Reason]int64{ReasonWrongType: 3, ReasonMissingValue: 2},
		Errors: []*RowError{
			{Pos: Pos{File: "data.csv", Line: 17}, Column: "conv_rate", Reason: ReasonWrongType, Msg: `"abc" is not a FLOAT`},
			{Pos: Pos{File: "data.csv", Line: 20}, Column: "driver_id", Reason: ReasonMissingValue, Msg: "missing value"},
		},
	}
	var out strings.Builder
	if err := st.WriteSummary(&out); err != nil {
		t.Fatal(err)
	}
	want := `data.csv: 1000 rows read in 2s (500 rows/s)
  written:            990
  skipped, not newer: 5
  rejected:           5 (missing_value 2, wrong_type 3)
  data.csv:17: column "conv_rate": "abc" is not a FLOAT
  data.csv:20: column "driver_id": missing value
  ... and 3 more rejected rows
`
	if out.String() != want {
		t.Fatalf("summary\n%s\nwant\n%s", out.String(), want)
	}
}
