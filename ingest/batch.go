package ingest

import (
	"time"

	"github.com/redis/rueidis"

	"github.com/lariat-gw/lariat/featurefetch"
)

type span struct{ start, end int32 }

// batchRow is one encoded row: spans into batch.buf.
type batchRow struct {
	pos  Pos
	key  span
	ts   span
	vals int32 // index of the row's first value end in batch.ends
}

// Row outcomes of a write.
const (
	outcomeSkipped int8 = iota
	outcomeWritten
	outcomeFailed
)

// batch holds encoded rows of one Schema: keys, timestamps and values in one
// buffer. A batch is used by one goroutine at a time.
type batch struct {
	s    *Schema
	buf  []byte
	rows []batchRow
	ends []int32 // per row, per feature: end of the value in buf
	keys []featurefetch.EntityValue

	// Row under construction.
	rowStart int
	cur      batchRow

	// Filled by Writer.write.
	str      string // buf as a string, shared by the commands
	outcome  []int8
	failures []*RowError
	cmds     []rueidis.Completed
}

func newBatch(s *Schema, capRows int) *batch {
	return &batch{
		s:    s,
		rows: make([]batchRow, 0, capRows),
		ends: make([]int32, 0, capRows*s.nFeatures()),
		keys: make([]featurefetch.EntityValue, len(s.keyNames)),
	}
}

func (b *batch) reset() {
	b.buf = b.buf[:0]
	b.rows = b.rows[:0]
	b.ends = b.ends[:0]
	b.str = ""
	clear(b.cmds)
	b.cmds = b.cmds[:0]
	b.outcome = b.outcome[:0]
	clear(b.failures)
	b.failures = b.failures[:0]
	clear(b.keys)
}

func (b *batch) len() int {
	return len(b.rows)
}

// begin starts a row. Then, in order: the key values go into b.keys and
// endKey is called, then setTime, then each feature value is appended to
// b.buf followed by endValue; commit ends the row, drop abandons it.
func (b *batch) begin(pos Pos) {
	b.rowStart = len(b.buf)
	b.cur = batchRow{pos: pos, vals: int32(len(b.ends))}
}

// endKey appends the Redis key of the values in b.keys.
func (b *batch) endKey() error {
	start := len(b.buf)
	if b.s.nKeys == 0 {
		b.keys[0] = featurefetch.EntityValue{Type: featurefetch.TypeString, Str: featurefetch.DummyEntityValue}
	}
	var err error
	b.buf, err = featurefetch.AppendEntityKey(b.buf, b.s.project, b.s.keyNames, b.keys)
	clear(b.keys) // drop references to input memory
	if err != nil {
		b.buf = b.buf[:start]
		return err
	}
	b.cur.key = span{int32(start), int32(len(b.buf))}
	return nil
}

// setTime appends the event time as a google.protobuf.Timestamp.
func (b *batch) setTime(t time.Time) {
	start := len(b.buf)
	b.buf = featurefetch.AppendTimestamp(b.buf, t)
	b.cur.ts = span{int32(start), int32(len(b.buf))}
}

// endValue records the end of the feature value just appended to b.buf.
func (b *batch) endValue() {
	b.ends = append(b.ends, int32(len(b.buf)))
}

func (b *batch) commit() {
	b.rows = append(b.rows, b.cur)
}

func (b *batch) drop() {
	b.buf = b.buf[:b.rowStart]
	b.ends = b.ends[:b.cur.vals]
	clear(b.keys)
}

// size returns the bytes held, to bound batches of very wide rows.
func (b *batch) size() int {
	return len(b.buf)
}
