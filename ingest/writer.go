package ingest

import (
	"context"
	"crypto/sha1"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/redis/rueidis"
)

//go:embed script.lua
var writeScript string

// DefaultRowsPerScript is the default number of rows one script call writes.
const DefaultRowsPerScript = 64

// WriterOptions tunes a Writer.
type WriterOptions struct {
	// RowsPerScript is the number of rows one EVALSHA call writes, amortizing
	// the cost of a script call; default DefaultRowsPerScript. A call holds
	// the server for roughly 5µs per row.
	RowsPerScript int
	// Cluster must be set for a Redis Cluster client: each call then writes
	// one row, since a script's keys must share a hash slot.
	Cluster bool
}

// Writer writes encoded rows newest-wins with a Lua script that it loads
// once (SCRIPT LOAD on every node) and calls with EVALSHA, pipelining the
// calls of a batch with DoMulti. It reloads the script when a server lost it
// (restart, SCRIPT FLUSH). Safe for concurrent use.
type Writer struct {
	c       rueidis.Client
	script  string
	sha     string
	perCall int

	loadMu sync.Mutex
}

// NewWriter loads the write script into every node of c.
func NewWriter(ctx context.Context, c rueidis.Client, opt WriterOptions) (*Writer, error) {
	return newScriptWriter(ctx, c, opt, writeScript)
}

// newScriptWriter returns a Writer calling script, which takes the arguments
// and returns the results script.lua describes.
func newScriptWriter(ctx context.Context, c rueidis.Client, opt WriterOptions, script string) (*Writer, error) {
	sum := sha1.Sum([]byte(script))
	w := &Writer{c: c, script: script, sha: hex.EncodeToString(sum[:]), perCall: opt.RowsPerScript}
	if w.perCall <= 0 {
		w.perCall = DefaultRowsPerScript
	}
	if opt.Cluster {
		w.perCall = 1
	}
	if err := w.load(ctx); err != nil {
		return nil, err
	}
	return w, nil
}

// Client returns the Redis client.
func (w *Writer) Client() rueidis.Client {
	return w.c
}

// Ping checks that Redis answers.
func (w *Writer) Ping(ctx context.Context) error {
	if err := w.c.Do(ctx, w.c.B().Ping().Build()).Error(); err != nil {
		return fmt.Errorf("redis ping failed: %w", err)
	}
	return nil
}

func (w *Writer) load(ctx context.Context) error {
	w.loadMu.Lock()
	defer w.loadMu.Unlock()
	for addr, n := range w.c.Nodes() {
		sha, err := n.Do(ctx, n.B().ScriptLoad().Script(w.script).Build()).ToString()
		if err != nil {
			return fmt.Errorf("cannot load the write script into redis at %s: %w", addr, err)
		}
		if sha != w.sha {
			return fmt.Errorf("redis at %s returned script SHA %s, want %s", addr, sha, w.sha)
		}
	}
	return nil
}

// maxScriptAttempts bounds the reloads of a lost script for one batch.
const maxScriptAttempts = 3

// write writes every row of b, filling b.outcome (and b.failures for rows
// Redis refused). Rows are written in order on the pipeline, so of two rows
// with the same key and event time the earlier wins. An error means the state
// of the batch's rows is unknown; writing the batch again is safe.
func (w *Writer) write(ctx context.Context, b *batch) error {
	w.prepare(b)
	return w.send(ctx, b)
}

// prepare builds the script calls of b, so that send only talks to Redis.
func (w *Writer) prepare(b *batch) {
	if len(b.rows) == 0 {
		return
	}
	b.str = string(b.buf)
	s := b.s
	nf := s.nFeatures()
	cmds := b.cmds[:0]
	for first := 0; first < len(b.rows); first += w.perCall {
		rows := b.rows[first:min(first+w.perCall, len(b.rows))]
		kc := w.c.B().Evalsha().Sha1(w.sha).Numkeys(int64(len(rows))).Key(b.sub(rows[0].key))
		for i := 1; i < len(rows); i++ {
			kc = kc.Key(b.sub(rows[i].key))
		}
		ac := kc.Arg(s.header...)
		for i := range rows {
			r := &rows[i]
			ac = ac.Arg(b.sub(r.ts))
			start := r.ts.end
			for _, end := range b.ends[r.vals : int(r.vals)+nf] {
				ac = ac.Arg(b.str[start:end])
				start = end
			}
		}
		// Newest-wins writes are idempotent: safe to retry on a new connection.
		cmds = append(cmds, ac.Build().ToRetryable())
	}
	b.cmds = cmds
}

// send runs the calls prepare built, reloading the script when Redis lost it.
func (w *Writer) send(ctx context.Context, b *batch) error {
	if len(b.rows) == 0 {
		return nil
	}
	for attempt := 1; ; attempt++ {
		noScript, err := w.sendOnce(ctx, b)
		if err != nil || !noScript {
			return err
		}
		if attempt == maxScriptAttempts {
			return errors.New("cannot write rows to redis: the write script keeps disappearing (NOSCRIPT)")
		}
		if err := w.load(ctx); err != nil {
			return err
		}
		w.prepare(b) // the commands were recycled by DoMulti
	}
}

func (w *Writer) sendOnce(ctx context.Context, b *batch) (noScript bool, err error) {
	resps := w.c.DoMulti(ctx, b.cmds...)
	if featurefetch.AllReplied(resps) {
		clear(b.cmds)
		b.cmds = b.cmds[:0]
	} else {
		// rueidis may still write these commands: the next batch builds
		// its own.
		b.cmds = nil
	}

	b.outcome = b.outcome[:0]
	clear(b.failures)
	b.failures = b.failures[:0]
	for ci, resp := range resps {
		arr, err := resp.ToArray()
		if err != nil {
			if rerr, ok := rueidis.IsRedisErr(err); ok && rerr.IsNoScript() {
				return true, nil
			}
			return false, fmt.Errorf("cannot write rows to redis: %w", err)
		}
		first := ci * w.perCall
		want := min(w.perCall, len(b.rows)-first)
		if len(arr) != want {
			return false, fmt.Errorf("cannot write rows to redis: the write script returned %d results for %d rows", len(arr), want)
		}
		for i := range arr {
			n, err := arr[i].AsInt64()
			switch {
			case err == nil && n == 1:
				b.outcome = append(b.outcome, outcomeWritten)
			case err == nil && n == 0:
				b.outcome = append(b.outcome, outcomeSkipped)
			default:
				if err == nil {
					err = fmt.Errorf("unexpected script result %d", n)
				}
				b.outcome = append(b.outcome, outcomeFailed)
				b.failures = append(b.failures, &RowError{Pos: b.rows[first+i].pos, Reason: ReasonRedis, Msg: "redis: " + err.Error()})
			}
		}
	}
	return false, nil
}

// sub returns the part of b.str under sp.
func (b *batch) sub(sp span) string {
	return b.str[sp.start:sp.end]
}
