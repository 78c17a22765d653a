package sink

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lariat-gw/lariat/internal/testwait"
	"github.com/lariat-gw/lariat/predlog"
)

// blockingSink holds every Write until release is closed.
// TestFlushInterval shows a record becomes readable at the first flush
// after it was submitted, not before.
func TestFlushInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		l, err := OpenLog("file://"+dir, predlog.Options{FlushInterval: time.Second, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		count := func() int {
			synctest.Wait()
			n := 0
			if err := Read(dir, func(*predlog.Record) error { n++; return nil }); err != nil {
				t.Fatal(err)
			}
			return n
		}
		r := l.Acquire()
		*r = *sampleRecord("r-1", time.Now())
		l.Submit(r)
		time.Sleep(990 * time.Millisecond)
		if n := count(); n != 0 {
			t.Fatalf("%d records readable before the flush", n)
		}
		time.Sleep(20 * time.Millisecond)
		if n := count(); n != 1 {
			t.Fatalf("%d records readable after the flush, want 1", n)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		assertNoTemp(t, dir)
	})
}

// TestFileSinkRotatesBySize starts a new file once one holds about
// MaxFileSize bytes.
func TestFileSinkRotatesBySize(t *testing.T) {
	dir := t.TempDir()
	l, err := OpenLog("file://"+dir, predlog.Options{FlushInterval: time.Hour, MaxFileSize: 4 << 10, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := 0; i < 100; i++ {
		r := l.Acquire()
		*r = *sampleRecord(fmt.Sprintf("r-%d", i), now)
		l.Submit(r)
		if i%10 == 9 {
			time.Sleep(3 * drainInterval) // let the writer take them
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A file is completed after the batch that reaches the size: here
	// batches of 10 records of about 520 bytes, so one file per batch
	// (fewer when a loaded machine lets batches gather in the queue).
	if len(files) < 4 || len(files) > 10 {
		t.Fatalf("%d files for 10 batches of 10 records of about %d bytes", len(files), recordSize(sampleRecord("r-00", now)))
	}
	if got := readAll(t, dir); len(got) != 100 {
		t.Fatalf("read %d records, want 100", len(got))
	}
}

// TestFileSinkErrors makes the folder unusable: records are dropped and
// counted, the log reports the error until files are written again.
func TestFileSinkErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	l, err := OpenLog("file://"+dir, predlog.Options{FlushInterval: 50 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	submit := func(id string) {
		r := l.Acquire()
		*r = *sampleRecord(id, time.Now())
		l.Submit(r)
	}
	sink0 := droppedSinkErrors(t)
	// The folder becomes a file: no partition folder can be created.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	submit("lost-1")
	testwait.Until(t, "the error reported", func() bool { return !l.Status().OK })
	if st := l.Status(); !strings.Contains(st.Error, "cannot create partition folder") || droppedSinkErrors(t)-sink0 != 1 {
		t.Fatalf("status %+v, %d dropped", st, droppedSinkErrors(t)-sink0)
	}
	// Still failing at the next flushes: the error stays.
	time.Sleep(150 * time.Millisecond)
	if l.Status().OK {
		t.Fatal("the error cleared while the folder is still unusable")
	}
	// The folder is back: the next file clears the error.
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	submit("kept-1")
	testwait.Until(t, "recovery", func() bool { return l.Status().OK })
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, dir); len(got) != 1 || got["kept-1"].RequestID == "" {
		t.Fatalf("records after recovery: %v", got)
	}
}

// TestStaleTempFiles: a new sink removes the temporary files of dead
// processes of this host, keeps those of running ones.
func TestStaleTempFiles(t *testing.T) {
	dir := t.TempDir()
	host, _ := os.Hostname()
	part := filepath.Join(dir, "route=r", "hour=2026-05-01T13")
	if err := os.MkdirAll(part, 0o755); err != nil {
		t.Fatal(err)
	}
	// A pid far above any pid_max is not running.
	dead := filepath.Join(part, ".part-20260501T130000.000-"+host+"-999999999-1.parquet.tmp")
	live := filepath.Join(part, ".part-20260501T130000.000-"+host+"-"+strconv.Itoa(os.Getpid())+"-1.parquet.tmp")
	other := filepath.Join(part, ".part-20260501T130000.000-elsewhere-999999999-1.parquet.tmp")
	for _, f := range []string{dead, live, other} {
		if err := os.WriteFile(f, []byte("PAR1"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := NewFileSink("file://"+dir, predlog.Options{}); err != nil {
		t.Fatal(err)
	}
	exists := func(p string) bool { _, err := os.Stat(p); return !errors.Is(err, os.ErrNotExist) }
	if exists(dead) || !exists(live) || !exists(other) {
		t.Fatalf("after open: dead %v, live %v, other host %v", exists(dead), exists(live), exists(other))
	}
	// An old one goes whatever its owner.
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(other, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFileSink("file://"+dir, predlog.Options{}); err != nil {
		t.Fatal(err)
	}
	if exists(other) {
		t.Fatal("an old temporary file was kept")
	}
	if _, err := NewFileSink("file://relative/dir", predlog.Options{}); err == nil || !strings.Contains(err.Error(), "want file:///ABSOLUTE/DIR") {
		t.Fatalf("relative URL: %v", err)
	}
}
