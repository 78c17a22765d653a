package predlog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// blockingSink holds every Write until release is closed.
type blockingSink struct {
	release chan struct{}
	mu      sync.Mutex
	n       int
}

func (s *blockingSink) Write(recs []*Record) (int, error) {
	<-s.release
	s.mu.Lock()
	s.n += len(recs)
	s.mu.Unlock()
	return 0, nil
}
func (s *blockingSink) Flush() (int, error) { return 0, nil }
func (s *blockingSink) Close() (int, error) { return 0, nil }
func (s *blockingSink) Check() error        { return nil }

// TestQueueFullDrops shows Submit never waits for a slow sink: beyond the
// queue, records are dropped and counted.
func TestQueueFullDrops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &blockingSink{release: make(chan struct{})}
		l := New(sink, "slow", Options{QueueSize: 10, FlushInterval: time.Second, Logger: quietLogger()})
		full0, closed0 := droppedFull.Get(), droppedClosed.Get()
		submit := func(n int) {
			for i := 0; i < n; i++ {
				r := l.Acquire()
				r.RequestID = "r" + strconv.Itoa(i)
				l.Submit(r)
			}
		}
		submit(10)
		time.Sleep(drainInterval) // the writer takes the 10 and blocks in Write
		synctest.Wait()
		submit(15) // 10 fit in the queue, 5 do not
		synctest.Wait()
		if d := droppedFull.Get() - full0; d != 5 {
			t.Fatalf("%d dropped, want 5", d)
		}
		close(sink.release)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if sink.n != 20 {
			t.Fatalf("sink got %d records, want 20", sink.n)
		}
		submit(1)
		if d := droppedClosed.Get() - closed0; d != 1 {
			t.Fatalf("%d dropped after Close, want 1", d)
		}
	})
}

// TestFlushInterval shows a record becomes readable at the first flush
// after it was submitted, not before.
func TestFlushInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		l, err := Open("file://"+dir, Options{FlushInterval: time.Second, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		count := func() int {
			synctest.Wait()
			n := 0
			if err := Read(dir, func(*Record) error { n++; return nil }); err != nil {
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
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		l, err := Open("file://"+dir, Options{FlushInterval: time.Hour, MaxFileSize: 4 << 10, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		for i := 0; i < 100; i++ {
			r := l.Acquire()
			*r = *sampleRecord(fmt.Sprintf("r-%d", i), now)
			l.Submit(r)
			if i%10 == 9 {
				time.Sleep(drainInterval) // the writer takes the 10
				synctest.Wait()
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
		// batches of 10 records of about 520 bytes, so one file per batch.
		if len(files) != 10 {
			t.Fatalf("%d files for 10 batches of 10 records of about %d bytes", len(files), sampleRecord("r-00", now).size())
		}
		if got := readAll(t, dir); len(got) != 100 {
			t.Fatalf("read %d records, want 100", len(got))
		}
	})
}

// TestFileSinkErrors makes the folder unusable: records are dropped and
// counted, the log reports the error until files are written again.
func TestFileSinkErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const flush = 50 * time.Millisecond
		dir := filepath.Join(t.TempDir(), "log")
		l, err := Open("file://"+dir, Options{FlushInterval: flush, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		submit := func(id string) {
			r := l.Acquire()
			*r = *sampleRecord(id, time.Now())
			l.Submit(r)
		}
		sink0 := droppedSink.Get()
		// The folder becomes a file: no partition folder can be created.
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dir, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		submit("lost-1")
		time.Sleep(flush) // the next flush
		synctest.Wait()
		if st := l.Status(); st.OK || !strings.Contains(st.Error, "cannot create partition folder") || droppedSink.Get()-sink0 != 1 {
			t.Fatalf("status %+v, %d dropped", st, droppedSink.Get()-sink0)
		}
		// Still failing at the next flushes: the error stays.
		time.Sleep(3 * flush)
		synctest.Wait()
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
		time.Sleep(flush)
		synctest.Wait()
		if st := l.Status(); !st.OK {
			t.Fatalf("status %+v after the folder came back", st)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, dir); len(got) != 1 || got["kept-1"].RequestID == "" {
			t.Fatalf("records after recovery: %v", got)
		}
	})
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
	if _, err := NewFileSink("file://"+dir, Options{}); err != nil {
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
	if _, err := NewFileSink("file://"+dir, Options{}); err != nil {
		t.Fatal(err)
	}
	if exists(other) {
		t.Fatal("an old temporary file was kept")
	}
	if _, err := NewFileSink("file://relative/dir", Options{}); err == nil || !strings.Contains(err.Error(), "want file:///ABSOLUTE/DIR") {
		t.Fatalf("relative URL: %v", err)
	}
}
