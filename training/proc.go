package training

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
)

// procInfo reads a process's state letter and start time (clock ticks after boot)
// from /proc/<pid>/stat.
func procInfo(pid int) (state byte, startTicks uint64, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name is in parentheses and may hold spaces or ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fields := bytes.Fields(data[i+1:])
	// fields[0] is field 3 (state); starttime is field 22.
	if len(fields) < 20 || len(fields[0]) != 1 {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	st, err := strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat: %w", pid, err)
	}
	return fields[0][0], st, nil
}

// processRuns reports whether pid is alive (not a zombie) and started at startTicks,
// so a pid the kernel gave to another process is not taken for the job's.
func processRuns(pid int, startTicks uint64) bool {
	if pid <= 0 {
		return false
	}
	state, st, err := procInfo(pid)
	if err != nil {
		return false
	}
	return st == startTicks && state != 'Z' && state != 'X'
}

// slots limits how many local jobs run at once. Waiters are served in order.
type slots struct {
	mu    sync.Mutex
	limit int
	used  int
	queue []chan struct{}
}

func newSlots(limit int) *slots {
	return &slots{limit: limit}
}

// tryAcquire takes a slot if one is free and nobody waits.
func (s *slots) tryAcquire() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used < s.limit && len(s.queue) == 0 {
		s.used++
		return true
	}
	return false
}

// force takes a slot even when none is free (re-attached jobs already run).
func (s *slots) force() {
	s.mu.Lock()
	s.used++
	s.mu.Unlock()
}

// acquire waits for a slot until ctx ends.
func (s *slots) acquire(ctx context.Context) error {
	if s.tryAcquire() {
		return nil
	}
	s.mu.Lock()
	if s.used < s.limit && len(s.queue) == 0 {
		s.used++
		s.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	s.queue = append(s.queue, ch)
	s.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for i, c := range s.queue {
		if c == ch {
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			s.mu.Unlock()
			return ctx.Err()
		}
	}
	s.mu.Unlock()
	// The slot was handed over while ctx ended: give it back.
	s.release()
	return ctx.Err()
}

// release frees a slot, handing it to the first waiter when there is one.
func (s *slots) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) > 0 && s.used <= s.limit {
		ch := s.queue[0]
		s.queue = s.queue[1:]
		close(ch)
		return
	}
	s.used--
}

// running returns the number of slots in use.
func (s *slots) running() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used
}
