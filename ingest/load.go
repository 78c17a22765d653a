package ingest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Load defaults.
const (
	// DefaultBatchSize is the number of rows written per pipelined round trip.
	DefaultBatchSize = 1024
	// DefaultShowErrors is the number of rejected rows a Stats keeps in full.
	DefaultShowErrors = 10
	// maxBatchBytes ends a batch early when its rows are wide.
	maxBatchBytes = 8 << 20
	// loadBatches is the number of batches in use: one being filled, the
	// others queued or being written. Memory stays bounded by it.
	loadBatches = 3
	// readBufferSize is the read buffer of text inputs.
	readBufferSize = 256 << 10
)

// Counters are the live counts of a load, read by progress reports. Safe for
// concurrent use.
type Counters struct {
	Read, Written, Skipped, Rejected atomic.Int64
	// Done and Total measure progress through the input: bytes for CSV and
	// JSON lines, rows for Parquet. Total is 0 when unknown (standard input).
	Done, Total atomic.Int64
}

// LoadOptions tunes Load.
type LoadOptions struct {
	// Format of the input; "" takes it from the file name's extension.
	Format Format
	// BatchSize is the number of rows per pipelined round trip to Redis;
	// default DefaultBatchSize.
	BatchSize int
	// ShowErrors is the number of rejected rows Stats.Errors keeps in full;
	// 0 means DefaultShowErrors, negative none.
	ShowErrors int
	// AbortAfter stops the load once this many rows have been rejected; 0
	// never stops. Rows read before are still written.
	AbortAfter int64
	// MaxLineBytes bounds one JSON line; default DefaultMaxLineBytes.
	MaxLineBytes int
	// Counters, when not nil, receive the live counts (for progress reports).
	Counters *Counters
	// WriteTimeout bounds the write of one batch, retries included (Redis
	// unreachable); default DefaultWriteTimeout.
	WriteTimeout time.Duration
}

// DefaultWriteTimeout bounds the write of one batch.
const DefaultWriteTimeout = 30 * time.Second

// Stats is the outcome of a load.
type Stats struct {
	// File is the input name.
	File string
	// Read counts the rows read (including rejected ones).
	Read int64
	// Written counts the rows written.
	Written int64
	// Skipped counts the rows not written because the stored row of the same
	// entity and view has the same or a newer event time.
	Skipped int64
	// Rejected counts the rows not written because of an error; ByReason
	// splits them.
	Rejected int64
	ByReason map[Reason]int64
	// Errors holds the first rejected rows (LoadOptions.ShowErrors), in
	// input order.
	Errors  []*RowError
	Elapsed time.Duration
}

// Load streams the file at path ("-" is standard input, CSV or JSON lines
// only) into Redis as rows of the schema's view and returns the counts.
// Rejected rows do not stop the load unless opt.AbortAfter is reached
// (ErrTooManyErrors). Other errors (unreadable file, missing column, Redis
// failing) end it; the returned Stats then count what was done. Whatever
// the outcome, loading the same file again is safe.
func Load(ctx context.Context, w *Writer, s *Schema, path string, opt LoadOptions) (*Stats, error) {
	start := time.Now()
	if opt.BatchSize <= 0 {
		opt.BatchSize = DefaultBatchSize
	}
	if opt.ShowErrors == 0 {
		opt.ShowErrors = DefaultShowErrors
	}
	if opt.Counters == nil {
		opt.Counters = new(Counters)
	}
	if opt.WriteTimeout <= 0 {
		opt.WriteTimeout = DefaultWriteTimeout
	}
	c := opt.Counters
	format := opt.Format
	if format == "" {
		if path == "-" {
			return &Stats{File: path}, errors.New("standard input needs an explicit format")
		}
		var err error
		if format, err = FormatOf(path); err != nil {
			return &Stats{File: path}, err
		}
	}

	var (
		in   io.Reader
		size int64
		src  source
		err  error
	)
	name := path
	if path == "-" {
		if format == FormatParquet {
			return &Stats{File: path}, errors.New("parquet cannot be read from standard input")
		}
		name, in = "stdin", os.Stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return &Stats{File: path}, fmt.Errorf("cannot open input: %w", err)
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return &Stats{File: path}, fmt.Errorf("cannot open input: %w", err)
		}
		if st.IsDir() {
			return &Stats{File: path}, fmt.Errorf("%s is a directory", path)
		}
		size = st.Size()
		in = f
	}
	l := &loader{w: w, s: s, opt: opt, c: c, stats: &Stats{File: name, ByReason: map[Reason]int64{}}}
	switch format {
	case FormatParquet:
		ra := in.(io.ReaderAt)
		ps, perr := newParquetSource(name, ra, size, s, &c.Done)
		if perr != nil {
			return l.finish(start), perr
		}
		defer ps.close()
		c.Total.Store(ps.f.NumRows())
		src = ps
	case FormatCSV, FormatJSONL:
		c.Total.Store(size)
		br := bufio.NewReaderSize(&countingReader{r: in, n: &c.Done}, readBufferSize)
		if format == FormatCSV {
			src, err = newCSVSource(name, br, s)
		} else {
			src = newJSONLSource(name, br, s, opt.MaxLineBytes)
		}
		if err != nil {
			return l.finish(start), err
		}
	default:
		return l.finish(start), fmt.Errorf("unknown format %q", format)
	}
	err = l.run(ctx, src)
	return l.finish(start), err
}

// loader runs one load: the caller's goroutine reads and encodes rows into
// batches, a second goroutine writes them, in order.
type loader struct {
	w     *Writer
	s     *Schema
	opt   LoadOptions
	c     *Counters
	mu    sync.Mutex // guards stats.Errors, stats.ByReason
	stats *Stats
}

func (l *loader) run(ctx context.Context, src source) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	free := make(chan *batch, loadBatches)
	full := make(chan *batch, loadBatches)
	for i := 0; i < loadBatches; i++ {
		free <- newBatch(l.s, l.opt.BatchSize)
	}
	writeDone := make(chan error, 1)
	go func() {
		var err error
		for b := range full {
			if err == nil {
				wctx, wcancel := context.WithTimeout(ctx, l.opt.WriteTimeout)
				if err = l.w.send(wctx, b); err == nil {
					l.account(b)
				} else {
					cancel()
				}
				wcancel()
			}
			b.reset()
			free <- b
		}
		writeDone <- err
	}()

	b := <-free
	var readErr error
	for n := 1; ; n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			break
		}
		err := src.next(b)
		if err == nil {
			l.c.Read.Add(1)
			if b.len() < l.opt.BatchSize && b.size() < maxBatchBytes {
				continue
			}
			l.w.prepare(b)
			full <- b
			b = nil
			select {
			case b = <-free:
			case <-ctx.Done():
			}
			if b == nil || ctx.Err() != nil {
				break
			}
			if l.tooMany() {
				readErr = l.abortErr()
				break
			}
			continue
		}
		if errors.Is(err, io.EOF) {
			break
		}
		var re *RowError
		if errors.As(err, &re) {
			l.c.Read.Add(1)
			l.reject(re)
			if l.tooMany() {
				readErr = l.abortErr()
				break
			}
			continue
		}
		readErr = err
		break
	}
	if b != nil {
		if b.len() > 0 && ctx.Err() == nil {
			l.w.prepare(b)
			full <- b
		} else {
			free <- b
		}
	}
	close(full)
	writeErr := <-writeDone
	switch {
	case writeErr != nil:
		return writeErr
	case readErr != nil:
		return readErr
	}
	return ctx.Err()
}

func (l *loader) tooMany() bool {
	return l.opt.AbortAfter > 0 && l.c.Rejected.Load() >= l.opt.AbortAfter
}

func (l *loader) abortErr() error {
	return fmt.Errorf("%s: %w: stopped after %d", l.stats.File, ErrTooManyErrors, l.c.Rejected.Load())
}

// account counts the outcome of a written batch.
func (l *loader) account(b *batch) {
	var written, skipped int64
	for _, o := range b.outcome {
		switch o {
		case outcomeWritten:
			written++
		case outcomeSkipped:
			skipped++
		}
	}
	l.c.Written.Add(written)
	l.c.Skipped.Add(skipped)
	l.s.metrics.written.Add(int(written))
	l.s.metrics.skipped.Add(int(skipped))
	for _, re := range b.failures {
		l.reject(re)
	}
}

func (l *loader) reject(re *RowError) {
	l.c.Rejected.Add(1)
	l.s.metrics.rejected[re.Reason].Inc()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stats.ByReason[re.Reason]++
	if len(l.stats.Errors) < l.opt.ShowErrors {
		l.stats.Errors = append(l.stats.Errors, re)
	}
}

func (l *loader) finish(start time.Time) *Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.stats
	st.Read = l.c.Read.Load()
	st.Written = l.c.Written.Load()
	st.Skipped = l.c.Skipped.Load()
	st.Rejected = l.c.Rejected.Load()
	st.Elapsed = time.Since(start)
	sort.SliceStable(st.Errors, func(i, j int) bool { return st.Errors[i].Pos.less(st.Errors[j].Pos) })
	return st
}

// WriteSummary writes the counts, the rejections by reason and the rejected
// rows kept, e.g.:
//
//	data.csv: 1000 rows read in 1.2s (833 rows/s)
//	  written:            990
//	  skipped, not newer: 5
//	  rejected:           5 (missing_value 2, wrong_type 3)
//	  data.csv:17: column "conv_rate": "abc" is not a FLOAT
//	  ...
func (s *Stats) WriteSummary(w io.Writer) error {
	var sb strings.Builder
	rate := 0.0
	if secs := s.Elapsed.Seconds(); secs > 0 {
		rate = float64(s.Read) / secs
	}
	fmt.Fprintf(&sb, "%s: %d rows read in %s (%.0f rows/s)\n", s.File, s.Read, s.Elapsed.Round(time.Millisecond), rate)
	fmt.Fprintf(&sb, "  written:            %d\n", s.Written)
	fmt.Fprintf(&sb, "  skipped, not newer: %d\n", s.Skipped)
	fmt.Fprintf(&sb, "  rejected:           %d", s.Rejected)
	if len(s.ByReason) > 0 {
		reasons := make([]string, 0, len(s.ByReason))
		for r := range s.ByReason {
			reasons = append(reasons, string(r))
		}
		slices.Sort(reasons)
		sb.WriteString(" (")
		for i, r := range reasons {
			if i > 0 {
				sb.WriteString(", ")
			}
			fmt.Fprintf(&sb, "%s %d", r, s.ByReason[Reason(r)])
		}
		sb.WriteString(")")
	}
	sb.WriteString("\n")
	for _, e := range s.Errors {
		sb.WriteString("  ")
		sb.WriteString(e.Error())
		sb.WriteString("\n")
	}
	if more := s.Rejected - int64(len(s.Errors)); more > 0 && len(s.Errors) > 0 {
		fmt.Fprintf(&sb, "  ... and %d more rejected rows\n", more)
	}
	_, err := io.WriteString(w, sb.String())
	return err
}
