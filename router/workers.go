package router

import (
	"sync"
	"time"
)

// workerPool runs tasks on long-lived goroutines, as fasthttp's server does
// for connections: no goroutine is created per task, and a task starts on a
// stack that has already grown to what an upstream call needs instead of
// growing (and copying) it on every request. Idle workers are kept in LIFO
// order, so the busy ones stay warm, and leave after maxWorkerIdle.
type workerPool struct {
	mu       sync.Mutex
	idle     []*worker
	cleaning bool
	closed   bool
	stop     chan struct{}
}

type worker struct {
	jobs     chan job
	lastUsed time.Time
}

type job struct {
	e *exec
	i int
}

const (
	maxIdleWorkers = 4096
	maxWorkerIdle  = 10 * time.Second
)

// newWorkerPool returns a pool whose janitor starts with its first
// worker and stops at close.
func newWorkerPool() *workerPool {
	return &workerPool{stop: make(chan struct{})}
}

// run starts task i of e on an idle worker, or on a new one. A nil pool
// runs it on a goroutine of its own.
func (wp *workerPool) run(e *exec, i int) {
	if wp == nil {
		go e.runAsync(i)
		return
	}
	wp.mu.Lock()
	if wp.closed {
		wp.mu.Unlock()
		go e.runAsync(i)
		return
	}
	if n := len(wp.idle); n > 0 {
		w := wp.idle[n-1]
		wp.idle[n-1] = nil
		wp.idle = wp.idle[:n-1]
		wp.mu.Unlock()
		w.jobs <- job{e, i}
		return
	}
	if !wp.cleaning {
		wp.cleaning = true
		go wp.clean()
	}
	wp.mu.Unlock()
	w := &worker{jobs: make(chan job, 1)}
	w.jobs <- job{e, i}
	go wp.loop(w)
}

// close stops the janitor and the idle workers; busy workers stop when
// their task ends. The pool must not be used afterwards.
func (wp *workerPool) close() {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	if wp.closed {
		return
	}
	wp.closed = true
	close(wp.stop)
	for _, w := range wp.idle {
		close(w.jobs)
	}
	clear(wp.idle)
	wp.idle = wp.idle[:0]
}

func (wp *workerPool) loop(w *worker) {
	for j := range w.jobs {
		j.e.runAsync(j.i)
		w.lastUsed = time.Now()
		wp.mu.Lock()
		if wp.closed || len(wp.idle) >= maxIdleWorkers {
			wp.mu.Unlock()
			return
		}
		wp.idle = append(wp.idle, w)
		wp.mu.Unlock()
	}
}

// clean stops workers idle for longer than maxWorkerIdle. The oldest idle
// workers are at the bottom of the stack.
func (wp *workerPool) clean() {
	t := time.NewTicker(maxWorkerIdle / 2)
	defer t.Stop()
	for {
		select {
		case <-wp.stop:
			return
		case <-t.C:
		}
		cutoff := time.Now().Add(-maxWorkerIdle)
		wp.mu.Lock()
		n := 0
		for n < len(wp.idle) && wp.idle[n].lastUsed.Before(cutoff) {
			close(wp.idle[n].jobs)
			n++
		}
		if n > 0 {
			copy(wp.idle, wp.idle[n:])
			clear(wp.idle[len(wp.idle)-n:])
			wp.idle = wp.idle[:len(wp.idle)-n]
		}
		wp.mu.Unlock()
	}
}
