package ingest

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// Format is an input file format.
type Format string

// Input formats.
const (
	FormatCSV     Format = "csv"
	FormatJSONL   Format = "jsonl"
	FormatParquet Format = "parquet"
)

// ParseFormat accepts "csv", "jsonl" (or "json", "ndjson") and "parquet".
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "csv":
		return FormatCSV, nil
	case "jsonl", "json", "ndjson":
		return FormatJSONL, nil
	case "parquet":
		return FormatParquet, nil
	}
	return "", fmt.Errorf("unknown format %q; want csv, jsonl or parquet", s)
}

// FormatOf returns the format named by path's extension.
func FormatOf(path string) (Format, error) {
	ext := strings.TrimPrefix(filepath.Ext(path), ".")
	if ext == "" {
		return "", fmt.Errorf("%s: cannot tell the format from the file name; give it explicitly", path)
	}
	f, err := ParseFormat(ext)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// source reads rows of one input and encodes them into batches.
type source interface {
	// next encodes the next row into b and commits it. It returns a
	// *RowError for a rejected row (b unchanged), io.EOF after the last row,
	// or another error, which ends the load.
	next(b *batch) error
}

// countingReader counts the bytes read into a progress counter.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// rowErr builds a *RowError.
func rowErr(pos Pos, column string, reason Reason, msg string) *RowError {
	return &RowError{Pos: pos, Column: column, Reason: reason, Msg: msg}
}

// textRow encodes one row whose columns are text cells (CSV cells, Parquet
// strings): cell(slot) returns the cell of schema column slot. An empty cell
// is null: an error for join keys and the event time, Feast's null value for
// features.
func textRow(b *batch, pos Pos, cell func(slot int) string) error {
	s := b.s
	b.begin(pos)
	for i := 0; i < s.nKeys; i++ {
		c := cell(i)
		col := &s.columns[i]
		if c == "" {
			b.drop()
			return rowErr(pos, col.Name, ReasonMissingValue, "missing value")
		}
		ev, err := entityFromText(col.Type, c)
		if err != nil {
			b.drop()
			return rowErr(pos, col.Name, ReasonWrongType, notAType(quoteCell(c), col.Type)+typeHint(col.Type, err))
		}
		b.keys[i] = ev
	}
	if err := b.endKey(); err != nil {
		b.drop()
		return rowErr(pos, "", ReasonWrongType, err.Error())
	}
	tsCol := &s.columns[s.tsSlot()]
	c := cell(s.tsSlot())
	if c == "" {
		b.drop()
		return rowErr(pos, tsCol.Name, ReasonMissingValue, "missing value")
	}
	t, err := parseTimestamp(c)
	if err != nil {
		b.drop()
		return rowErr(pos, tsCol.Name, ReasonBadTimestamp, quoteCell(c)+" "+errBadTimestamp.Error())
	}
	b.setTime(t)
	for slot := s.tsSlot() + 1; slot < len(s.columns); slot++ {
		col := &s.columns[slot]
		if c := cell(slot); c != "" {
			var err error
			if b.buf, err = appendTextValue(b.buf, col.Type, c); err != nil {
				b.drop()
				shown := quoteCell(c)
				if col.Type.IsList() {
					shown = shortJSON(c) // a JSON array, shown as it is
				}
				return rowErr(pos, col.Name, ReasonWrongType, notAType(shown, col.Type)+typeHint(col.Type, err))
			}
		}
		b.endValue()
	}
	b.commit()
	return nil
}

// checkTime rejects event times outside years 1..9999.
func checkTime(pos Pos, col string, t time.Time) error {
	if !timeInRange(t) {
		return rowErr(pos, col, ReasonBadTimestamp, "time "+t.UTC().Format(time.RFC3339Nano)+" is outside years 1..9999")
	}
	return nil
}
