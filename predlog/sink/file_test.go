package sink

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/predlog"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// readAll reads every record under dir, keyed by request id.
func readAll(t *testing.T, dir string) map[string]predlog.Record {
	t.Helper()
	got := map[string]predlog.Record{}
	err := Read(dir, func(r *predlog.Record) error {
		if _, dup := got[r.RequestID]; dup {
			return fmt.Errorf("record %s read twice", r.RequestID)
		}
		got[r.RequestID] = *r
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestFileSinkPartitionsAndReadsBack(t *testing.T) {
	dir := t.TempDir()
	l, err := OpenLog("file://"+dir, predlog.Options{Logger: quietLogger(), FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	h1 := time.Date(2026, 5, 1, 13, 59, 59, 0, time.UTC)
	h2 := h1.Add(2 * time.Second)
	want := map[string]*predlog.Record{}
	for i := 0; i < 300; i++ {
		tm := h1
		if i%2 == 1 {
			tm = h2
		}
		r := sampleRecord(fmt.Sprintf("r-%d", i), tm)
		if i%3 == 0 {
			r.Route = "other"
		}
		want[r.RequestID] = r
		rec := l.Acquire()
		*rec = *r
		l.Submit(rec)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, f := range files {
		rel, _ := filepath.Rel(dir, filepath.Dir(f))
		parts = append(parts, rel)
	}
	wantParts := "route=allocate/hour=2026-05-01T13 route=allocate/hour=2026-05-01T14 route=other/hour=2026-05-01T13 route=other/hour=2026-05-01T14"
	if strings.Join(parts, " ") != wantParts {
		t.Fatalf("partitions %v, want %s", parts, wantParts)
	}
	got := readAll(t, dir)
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for id, w := range want {
		g := got[id]
		g.Time, g.Features[0].EventTime = g.Time.UTC(), ptr(g.Features[0].EventTime.UTC())
		if !reflect.DeepEqual(&g, w) {
			t.Fatalf("record %s:\n got %+v\nwant %+v", id, g, *w)
		}
	}
	assertNoTemp(t, dir)
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(p, tmpSuffix) {
			t.Errorf("temporary file left: %s", p)
		}
		return nil
	})
}
