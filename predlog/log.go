// Package predlog owns the prediction log on the gateway's side: the Record
// of one answered request (route version, arm, model versions, features
// served, outputs), the Log that takes records off the request path, and
// the sink process it feeds. The sinks themselves, Parquet files
// partitioned by route and hour (file://) and a Kafka topic (kafka://), are
// package predlog/sink, run by the lariat-predlog process (see Open), so
// that the gateway links neither Parquet nor Kafka.
//
// The request path hands a record to Log.Submit, which never blocks: a
// bounded queue sits between requests and the one goroutine that writes
// to the sink, and when it is full records are dropped and counted in
// lariat_prediction_log_dropped_total.
package predlog

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Defaults of Options.
const (
	DefaultFlushInterval = time.Second
	DefaultQueueSize     = 16384
	DefaultMaxFileSize   = 64 << 20
)

// maxBatch bounds the records handed to a sink at once.
const maxBatch = 512

// drainInterval is how often the writer takes the records queued. The
// writer polls rather than waking for each record: a wake-up per request
// costs the request path more than the write itself.
const drainInterval = 20 * time.Millisecond

// Options tune a Log. Zero values take the defaults.
type Options struct {
	// FlushInterval is how often the sink is flushed: open Parquet files
	// are closed and renamed, so a crash loses at most this much.
	FlushInterval time.Duration
	// QueueSize bounds the records waiting for the writer; beyond it
	// records are dropped and counted.
	QueueSize int
	// MaxFileSize rotates a Parquet file once the records written to it
	// reach about this many bytes (before compression).
	MaxFileSize int64
	// Logger receives the sink's problems (default slog.Default()).
	Logger *slog.Logger
	// KafkaUser and KafkaPassword authenticate a kafka:// sink with
	// sasl=... in its URL.
	KafkaUser, KafkaPassword string
	// SinkCommand is the sink process Open starts: the program and its
	// first arguments. Default: lariat-predlog next to the running
	// executable, else on PATH.
	SinkCommand []string
}

// Defaults sets the zero fields of o to their defaults.
func (o *Options) Defaults() {
	if o.FlushInterval <= 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.MaxFileSize <= 0 {
		o.MaxFileSize = DefaultMaxFileSize
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Sink stores batches of records. Its methods are called from the log's
// one writer goroutine. A sink must not keep a record after Write
// returns. lost counts the records that an error made it drop.
//
// A sink that also drops records after Write returned (a producer whose
// buffer is full, a delivery that failed later) implements DropCounter.
type Sink interface {
	// Write stores or sends the records.
	Write(recs []*Record) (lost int, err error)
	// Flush makes what was written visible to readers.
	Flush() (lost int, err error)
	// Close flushes and releases the sink.
	Close() (lost int, err error)
	// Check reports a standing problem (such as a broker that does not
	// answer), or nil. It is called at every flush interval.
	Check() error
}

// DropCounter is a Sink that drops records after Write returned. The log
// takes its counts after every call of a Sink method.
type DropCounter interface {
	// TakeDrops returns the records dropped since the last call because
	// a buffer was full (full) or their delivery failed (failed).
	TakeDrops() (full, failed int)
}

// Metrics of the prediction log.
var (
	// recordsWritten counts records handed to the sink; those a sink
	// error loses later are counted again as dropped (sink_error).
	recordsWritten  = metrics.NewCounter(`lariat_prediction_log_records_total`)
	droppedFull     = metrics.NewCounter(`lariat_prediction_log_dropped_total{reason="queue_full"}`)
	droppedSink     = metrics.NewCounter(`lariat_prediction_log_dropped_total{reason="sink_error"}`)
	droppedClosed   = metrics.NewCounter(`lariat_prediction_log_dropped_total{reason="closed"}`)
	sinkErrors      = metrics.NewCounter(`lariat_prediction_log_sink_errors_total`)
	flushesTotal    = metrics.NewCounter(`lariat_prediction_log_flushes_total`)
	errNotSupported = errors.New("unsupported prediction log URL")

	// currentLog is the log the gauges describe (the last started); the
	// gauges exist once a log has started.
	currentLog atomic.Pointer[Log]
	gaugesOnce sync.Once
)

func registerGauges() {
	metrics.NewGauge(`lariat_prediction_log_queue_length`, func() float64 {
		if l := currentLog.Load(); l != nil {
			return float64(len(l.q))
		}
		return 0
	})
	metrics.NewGauge(`lariat_prediction_log_healthy`, func() float64 {
		if l := currentLog.Load(); l != nil && l.Status().OK {
			return 1
		}
		return 0
	})
}

// Log hands records from the request path to a Sink through a bounded
// queue. Submit is safe for concurrent use and never blocks.
type Log struct {
	sink  Sink
	name  string
	opts  Options
	q     chan *Record
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
	pool  sync.Pool
	close atomic.Bool

	mu      sync.Mutex
	lastErr error
	errAt   time.Time
}

// Open starts a log on the sink the URL names:
//
//	file:///DIR                             Parquet files under DIR
//	kafka://HOST:PORT[,HOST:PORT]/TOPIC     JSON records to a Kafka topic
//
// The sink runs in its own process (opts.SinkCommand, lariat-predlog by
// default) that the log feeds one JSON record per line; see package
// predlog/sink for the URLs' query parameters. Open fails when the process
// cannot start or cannot open the sink (a bad URL, a folder it cannot
// create).
func Open(rawURL string, opts Options) (*Log, error) {
	opts.Defaults()
	if !strings.HasPrefix(rawURL, "file://") && !strings.HasPrefix(rawURL, "kafka://") {
		return nil, fmt.Errorf("%w %q: want file:///DIR or kafka://HOST:PORT[,HOST:PORT]/TOPIC", errNotSupported, rawURL)
	}
	sink, err := startProcessSink(rawURL, opts)
	if err != nil {
		return nil, err
	}
	return New(sink, RedactURL(rawURL), opts), nil
}

// RedactURL drops the query and any user information from a URL, for
// display.
func RedactURL(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		u = u[:i]
	}
	if scheme, rest, ok := strings.Cut(u, "://"); ok {
		if at := strings.IndexByte(rest, '@'); at >= 0 && at < strings.IndexByte(rest+"/", '/') {
			rest = rest[at+1:]
		}
		u = scheme + "://" + rest
	}
	return u
}

// New starts a log writing to sink; name describes the sink in Status.
func New(sink Sink, name string, opts Options) *Log {
	opts.Defaults()
	l := &Log{
		sink: sink,
		name: name,
		opts: opts,
		q:    make(chan *Record, opts.QueueSize),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	l.pool.New = func() any { return new(Record) }
	currentLog.Store(l)
	gaugesOnce.Do(registerGauges)
	go l.run()
	return l
}

// Acquire returns an empty record to fill and Submit.
func (l *Log) Acquire() *Record {
	return l.pool.Get().(*Record)
}

// Release returns a record that will not be submitted.
func (l *Log) Release(r *Record) {
	r.reset()
	l.pool.Put(r)
}

// Submit queues r for writing and gives up ownership of it. When the
// queue is full, or the log is closed, r is dropped and counted.
func (l *Log) Submit(r *Record) {
	if l.close.Load() {
		droppedClosed.Inc()
		l.Release(r)
		return
	}
	select {
	case l.q <- r:
	default:
		droppedFull.Inc()
		l.Release(r)
	}
}

// Close stops accepting records, writes those queued, flushes and closes
// the sink. It returns the sink's last error, if any.
func (l *Log) Close() error {
	l.once.Do(func() {
		l.close.Store(true)
		close(l.stop)
	})
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastErr
}

func (l *Log) run() {
	defer close(l.done)
	t := time.NewTicker(l.opts.FlushInterval)
	defer t.Stop()
	d := time.NewTicker(min(drainInterval, l.opts.FlushInterval))
	defer d.Stop()
	batch := make([]*Record, 0, maxBatch)
	writeQueued := func() {
		for {
			batch = l.drain(batch[:0])
			if len(batch) == 0 {
				return
			}
			l.write(batch)
		}
	}
	for {
		select {
		case <-d.C:
			writeQueued()
		case <-t.C:
			writeQueued()
			l.flush()
		case <-l.stop:
			writeQueued()
			lost, err := l.sink.Close()
			l.account(lost, err, "close")
			l.takeDrops()
			return
		}
	}
}

// drain appends the records waiting in the queue, up to maxBatch.
func (l *Log) drain(batch []*Record) []*Record {
	for len(batch) < maxBatch {
		select {
		case r := <-l.q:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

func (l *Log) write(batch []*Record) {
	lost, err := l.sink.Write(batch)
	recordsWritten.Add(len(batch))
	l.account(lost, err, "write")
	l.takeDrops()
	for i, r := range batch {
		l.Release(r)
		batch[i] = nil
	}
}

func (l *Log) flush() {
	flushesTotal.Inc()
	lost, err := l.sink.Flush()
	if err == nil {
		err = l.sink.Check()
	}
	l.account(lost, err, "flush")
	l.takeDrops()
	if err == nil {
		l.mu.Lock()
		recovered := l.lastErr != nil
		l.lastErr = nil
		l.mu.Unlock()
		if recovered {
			l.opts.Logger.Info("prediction log: the sink works again", "sink", l.name)
		}
	}
}

// takeDrops counts the records a DropCounter sink dropped on its own.
func (l *Log) takeDrops() {
	if dc, ok := l.sink.(DropCounter); ok {
		full, failed := dc.TakeDrops()
		droppedFull.Add(full)
		droppedSink.Add(failed)
	}
}

// account counts records lost to a sink error and remembers the error.
func (l *Log) account(lost int, err error, op string) {
	if lost > 0 {
		droppedSink.Add(lost)
	}
	if err == nil {
		return
	}
	sinkErrors.Inc()
	l.mu.Lock()
	first := l.lastErr == nil
	l.lastErr, l.errAt = err, time.Now()
	l.mu.Unlock()
	if first {
		l.opts.Logger.Error("prediction log: "+op+" failed; records are dropped until it recovers", "sink", l.name, "lost", lost, "error", err)
	}
}

// Status is the state of a log, as /readyz shows it.
type Status struct {
	Sink   string `json:"sink"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	Since  string `json:"since,omitempty"`
	Queued int    `json:"queued"`
	// Written and Dropped count records since the process started.
	Written uint64 `json:"written"`
	Dropped uint64 `json:"dropped"`
}

// Status reports whether the sink works, its last error and counts.
func (l *Log) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := Status{Sink: l.name, OK: l.lastErr == nil, Queued: len(l.q), Written: recordsWritten.Get(),
		Dropped: droppedFull.Get() + droppedSink.Get() + droppedClosed.Get()}
	if l.lastErr != nil {
		s.Error = l.lastErr.Error()
		s.Since = l.errAt.UTC().Format(time.RFC3339)
	}
	return s
}
