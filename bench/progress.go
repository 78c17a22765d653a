package bench

import (
	"fmt"
	"os"
	"time"
)

// IsTerminal reports whether f is a terminal (a character device), for
// choosing Config.ProgressRedraw.
func IsTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progress writes progress lines until done is closed.
func (r *runner) progress(done <-chan struct{}) {
	cfg := &r.t.cfg
	tk := time.NewTicker(cfg.ProgressInterval)
	defer tk.Stop()
	var prevDone int64
	var prevAt time.Duration
	write := func(final bool) {
		at := time.Since(r.start)
		var sent, completed, errs int64
		for _, w := range r.workers {
			sent += w.started.Load()
			completed += w.done.Load()
			errs += w.errs.Load()
		}
		rps := 0.0
		if final {
			rps = float64(completed) / at.Seconds()
		} else if d := (at - prevAt).Seconds(); d > 0 {
			rps = float64(completed-prevDone) / d
		}
		prevDone, prevAt = completed, at
		p99 := "-"
		// The last full second, or the one before while the workers have
		// not yet handed the last one over.
		sec := int(at/time.Second) - 1
		d := r.tl.p99(sec)
		if d < 0 {
			d = r.tl.p99(sec - 1)
		}
		if d >= 0 {
			p99 = fmtMs(float64(d) / float64(time.Millisecond))
		}
		line := fmt.Sprintf("%s: elapsed %.1fs  sent %d  rps %s  p99 %s  errors %d",
			cfg.Name, at.Seconds(), sent, fmtNum(rps), p99, errs)
		if cfg.ProgressRedraw {
			end := ""
			if final {
				end = "\n"
			}
			fmt.Fprintf(cfg.Progress, "\r\033[K%s%s", line, end)
			return
		}
		fmt.Fprintln(cfg.Progress, line)
	}
	for {
		select {
		case <-tk.C:
			write(false)
		case <-done:
			if cfg.ProgressRedraw {
				write(true)
			}
			return
		}
	}
}
