package ingest

import (
	"errors"
	"strconv"
)

// Reason classifies a rejected row.
type Reason string

// Reasons a row is rejected for; they are also the values of the reason label
// of the lariat_ingest_rows_rejected_total metric.
const (
	// ReasonMissingColumn: the row lacks a column the view needs.
	ReasonMissingColumn Reason = "missing_column"
	// ReasonMissingValue: a join key or the event time is empty or null.
	ReasonMissingValue Reason = "missing_value"
	// ReasonWrongType: a value does not convert to the column's declared type.
	ReasonWrongType Reason = "wrong_type"
	// ReasonBadTimestamp: the event time does not parse.
	ReasonBadTimestamp Reason = "bad_timestamp"
	// ReasonMalformed: the line is not valid CSV or JSON.
	ReasonMalformed Reason = "malformed"
	// ReasonRedis: Redis refused the write (e.g. the key holds another type).
	ReasonRedis Reason = "redis"
)

var allReasons = []Reason{ReasonMissingColumn, ReasonMissingValue, ReasonWrongType, ReasonBadTimestamp, ReasonMalformed, ReasonRedis}

// ErrTooManyErrors ends a load whose rejected rows exceed LoadOptions.MaxErrors.
var ErrTooManyErrors = errors.New("too many rejected rows")

// ErrEmptyFile is returned for an input without a header, a schema or any line.
var ErrEmptyFile = errors.New("empty file")

// posKind selects how a Pos is printed.
type posKind uint8

const (
	posLine     posKind = iota // file:line
	posRowGroup                // file: row group G, row R
	posDFRow                   // df row R
)

// Pos locates a row in its input.
type Pos struct {
	// File is the input's name as given.
	File string
	// Line is the 1-based line of a CSV record or JSON line.
	Line int64
	// RowGroup and Row are the 0-based Parquet row group and row within it;
	// Row is also the 0-based row of a push request's df.
	RowGroup int
	Row      int64
	kind     posKind
}

// String returns "file:line", "file: row group G, row R" or "df row R".
func (p Pos) String() string {
	return string(p.appendTo(nil))
}

func (p Pos) appendTo(b []byte) []byte {
	switch p.kind {
	case posRowGroup:
		b = append(b, p.File...)
		b = append(b, ": row group "...)
		b = strconv.AppendInt(b, int64(p.RowGroup), 10)
		b = append(b, ", row "...)
		return strconv.AppendInt(b, p.Row, 10)
	case posDFRow:
		b = append(b, "df row "...)
		return strconv.AppendInt(b, p.Row, 10)
	}
	b = append(b, p.File...)
	b = append(b, ':')
	return strconv.AppendInt(b, p.Line, 10)
}

// less orders positions within one input.
func (p Pos) less(q Pos) bool {
	if p.Line != q.Line {
		return p.Line < q.Line
	}
	if p.RowGroup != q.RowGroup {
		return p.RowGroup < q.RowGroup
	}
	return p.Row < q.Row
}

// RowError is a rejected row: "data.csv:17: column "conv_rate": "abc" is not a FLOAT".
type RowError struct {
	Pos Pos
	// Column is the offending column, "" when the error concerns the whole row.
	Column string
	Reason Reason
	Msg    string
}

// Error returns the position, the column if any, and the message.
func (e *RowError) Error() string {
	b := e.Pos.appendTo(nil)
	b = append(b, ": "...)
	if e.Column != "" {
		b = append(b, "column "...)
		b = strconv.AppendQuote(b, e.Column)
		b = append(b, ": "...)
	}
	b = append(b, e.Msg...)
	return string(b)
}
