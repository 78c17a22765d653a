package ingest

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// ProgressMode selects how progress is shown.
type ProgressMode uint8

const (
	// ProgressNone shows nothing.
	ProgressNone ProgressMode = iota
	// ProgressBar redraws one line in place, for terminals.
	ProgressBar
	// ProgressLines prints one line per interval, for logs and pipes.
	ProgressLines
)

// barInterval is how often the bar is redrawn.
const barInterval = 200 * time.Millisecond

// ProgressSnapshot is the state of a load at one moment.
type ProgressSnapshot struct {
	Read, Written, Skipped, Rejected int64
	// Done and Total as in Counters; Total 0 when unknown.
	Done, Total int64
	Elapsed     time.Duration
}

// Progress reports a load's Counters periodically to a writer (usually
// standard error).
type Progress struct {
	w        io.Writer
	mode     ProgressMode
	c        *Counters
	start    time.Time
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	lastLen  int
}

// StartProgress starts reporting c to w: a bar redrawn every 200ms, or a
// line every interval. Stop ends it.
func StartProgress(w io.Writer, mode ProgressMode, interval time.Duration, c *Counters) *Progress {
	p := &Progress{w: w, mode: mode, c: c, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	if mode == ProgressNone {
		close(p.done)
		return p
	}
	if mode == ProgressBar || interval <= 0 {
		interval = barInterval
	}
	go p.loop(interval)
	return p
}

func (p *Progress) loop(interval time.Duration) {
	defer close(p.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			p.report(false)
		case <-p.stop:
			p.report(true)
			return
		}
	}
}

// Stop prints the final state (and ends the bar's line) and stops reporting.
func (p *Progress) Stop() {
	p.stopOnce.Do(func() { close(p.stop) })
	<-p.done
}

func (p *Progress) snapshot() ProgressSnapshot {
	return ProgressSnapshot{
		Read:     p.c.Read.Load(),
		Written:  p.c.Written.Load(),
		Skipped:  p.c.Skipped.Load(),
		Rejected: p.c.Rejected.Load(),
		Done:     p.c.Done.Load(),
		Total:    p.c.Total.Load(),
		Elapsed:  time.Since(p.start),
	}
}

func (p *Progress) report(final bool) {
	snap := p.snapshot()
	switch p.mode {
	case ProgressBar:
		line := FormatBar(snap, 30)
		pad := ""
		if n := p.lastLen - len(line); n > 0 {
			pad = strings.Repeat(" ", n)
		}
		p.lastLen = len(line)
		end := ""
		if final {
			end = "\n"
		}
		fmt.Fprintf(p.w, "\r%s%s%s", line, pad, end)
	case ProgressLines:
		fmt.Fprintln(p.w, FormatProgressLine(snap))
	}
}

// fraction returns the part of the input done, or -1 when unknown.
func (s ProgressSnapshot) fraction() float64 {
	if s.Total <= 0 {
		return -1
	}
	return min(float64(s.Done)/float64(s.Total), 1)
}

// rate returns rows read per second.
func (s ProgressSnapshot) rate() float64 {
	if secs := s.Elapsed.Seconds(); secs > 0 {
		return float64(s.Read) / secs
	}
	return 0
}

// eta estimates the time left from the rate of progress so far; ok is false
// when it cannot be told.
func (s ProgressSnapshot) eta() (time.Duration, bool) {
	f := s.fraction()
	if f <= 0 || s.Elapsed <= 0 {
		return 0, false
	}
	left := time.Duration(float64(s.Elapsed) * (1 - f) / f)
	return left.Round(time.Second), true
}

// FormatBar renders the progress bar of width cells:
//
//	[=========>          ]  45.2%  123456 rows  98765 rows/s  ETA 12s
//
// Without a known total the bar and percentage are left out.
func FormatBar(s ProgressSnapshot, width int) string {
	var sb strings.Builder
	if f := s.fraction(); f >= 0 {
		filled := int(f * float64(width))
		sb.WriteByte('[')
		for i := 0; i < width; i++ {
			switch {
			case i < filled:
				sb.WriteByte('=')
			case i == filled && filled < width:
				sb.WriteByte('>')
			default:
				sb.WriteByte(' ')
			}
		}
		fmt.Fprintf(&sb, "] %5.1f%%  ", f*100)
	}
	fmt.Fprintf(&sb, "%d rows  %.0f rows/s", s.Read, s.rate())
	if s.Rejected > 0 {
		fmt.Fprintf(&sb, "  %d rejected", s.Rejected)
	}
	if eta, ok := s.eta(); ok {
		fmt.Fprintf(&sb, "  ETA %s", eta)
	}
	return sb.String()
}

// FormatProgressLine renders one progress line:
//
//	progress: 45.2% 123456 rows read, 120000 written, 3000 skipped, 12 rejected, 98765 rows/s, ETA 12s
func FormatProgressLine(s ProgressSnapshot) string {
	var sb strings.Builder
	sb.WriteString("progress: ")
	if f := s.fraction(); f >= 0 {
		fmt.Fprintf(&sb, "%.1f%% ", f*100)
	}
	fmt.Fprintf(&sb, "%d rows read, %d written, %d skipped, %d rejected, %.0f rows/s", s.Read, s.Written, s.Skipped, s.Rejected, s.rate())
	if eta, ok := s.eta(); ok {
		fmt.Fprintf(&sb, ", ETA %s", eta)
	}
	return sb.String()
}
