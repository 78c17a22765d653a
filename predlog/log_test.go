package predlog

import (
	"io"
	"log/slog"
	"strconv"
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

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
