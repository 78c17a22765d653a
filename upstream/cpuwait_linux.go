package upstream

import (
	"bytes"
	"os"
	"strconv"
)

// runDelays reads how long the threads of this process have waited, in
// total, on the kernel's run queues, from /proc/self/task/*/schedstat. It
// keeps each thread's file open and looks for new threads every
// rescanEvery readings. Its user (cpuWait) serializes the readings.
type runDelays struct {
	files map[string]*os.File
	reads int
	buf   [128]byte
}

const rescanEvery = 10

var processRunDelays runDelays

// osRunDelay returns the total CPU time of this process's threads and
// their total run-queue delay (ns), and how many times they were put on a
// CPU; ok is false when the kernel does not tell.
func osRunDelay() (cpu, delay, slices uint64, ok bool) { return processRunDelays.read() }

func (r *runDelays) read() (cpu, delay, slices uint64, ok bool) {
	if r.reads%rescanEvery == 0 {
		r.rescan()
	}
	r.reads++
	for tid, f := range r.files {
		n, err := f.ReadAt(r.buf[:], 0)
		if n == 0 && err != nil {
			// The thread ended.
			f.Close()
			delete(r.files, tid)
			continue
		}
		// cpu_time run_delay timeslices
		fields := bytes.Fields(r.buf[:n])
		if len(fields) < 3 {
			return 0, 0, 0, false
		}
		c, err0 := strconv.ParseUint(string(fields[0]), 10, 64)
		d, err1 := strconv.ParseUint(string(fields[1]), 10, 64)
		s, err2 := strconv.ParseUint(string(fields[2]), 10, 64)
		if err0 != nil || err1 != nil || err2 != nil {
			return 0, 0, 0, false
		}
		cpu += c
		delay += d
		slices += s
		ok = true
	}
	return cpu, delay, slices, ok
}

// rescan opens the files of threads started since the last scan.
func (r *runDelays) rescan() {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return
	}
	if r.files == nil {
		r.files = make(map[string]*os.File, len(tasks))
	}
	for _, t := range tasks {
		if r.files[t.Name()] != nil {
			continue
		}
		if f, err := os.Open("/proc/self/task/" + t.Name() + "/schedstat"); err == nil {
			r.files[t.Name()] = f
		}
	}
}
