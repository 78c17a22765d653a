package ingest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/tidwall/gjson"

	"github.com/lariat-gw/lariat/featurefetch"
)

// DefaultMaxLineBytes bounds one JSON line.
const DefaultMaxLineBytes = 64 << 20

// jsonlSource reads one JSON object per line. Keys the view does not need
// are ignored; blank lines are skipped.
type jsonlSource struct {
	name    string
	r       *bufio.Reader
	maxLine int
	line    int64
	long    []byte // a line longer than the read buffer
	sawLine bool
	index   map[string]int
	vals    []gjson.Result
}

func newJSONLSource(name string, r *bufio.Reader, s *Schema, maxLine int) *jsonlSource {
	if maxLine <= 0 {
		maxLine = DefaultMaxLineBytes
	}
	src := &jsonlSource{name: name, r: r, maxLine: maxLine, index: make(map[string]int, len(s.columns)), vals: make([]gjson.Result, len(s.columns))}
	for slot, col := range s.columns {
		src.index[col.Name] = slot
	}
	return src
}

func (j *jsonlSource) next(b *batch) error {
	for {
		line, tooLong, err := j.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) && !j.sawLine {
				return fmt.Errorf("%s: %w", j.name, ErrEmptyFile)
			}
			return err
		}
		pos := Pos{File: j.name, Line: j.line}
		if tooLong {
			j.sawLine = true
			return rowErr(pos, "", ReasonMalformed, "malformed JSON: line longer than "+strconv.Itoa(j.maxLine)+" bytes")
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		j.sawLine = true
		return j.row(b, pos, line)
	}
}

// readLine returns the next line without its newline. The slice is valid
// until the next call. tooLong reports a line over maxLine bytes, which is
// skipped.
func (j *jsonlSource) readLine() (line []byte, tooLong bool, err error) {
	j.line++
	j.long = j.long[:0]
	for {
		chunk, err := j.r.ReadSlice('\n')
		atEOF := errors.Is(err, io.EOF)
		if err != nil && !atEOF && !errors.Is(err, bufio.ErrBufferFull) {
			return nil, false, fmt.Errorf("%s: cannot read: %w", j.name, err)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			// Part of a line longer than the read buffer.
			if !tooLong && len(j.long)+len(chunk) > j.maxLine {
				tooLong = true
			}
			if !tooLong {
				j.long = append(j.long, chunk...)
			}
			continue
		}
		if atEOF && len(chunk) == 0 && len(j.long) == 0 && !tooLong {
			return nil, false, io.EOF
		}
		chunk = bytes.TrimSuffix(chunk, []byte{'\n'})
		switch {
		case tooLong || len(j.long)+len(chunk) > j.maxLine:
			return nil, true, nil
		case len(j.long) == 0:
			return chunk, false, nil
		}
		j.long = append(j.long, chunk...)
		return j.long, false, nil
	}
}

func (j *jsonlSource) row(b *batch, pos Pos, line []byte) error {
	if !gjson.ValidBytes(line) {
		var v any
		msg := "invalid JSON"
		if err := json.Unmarshal(line, &v); err != nil {
			msg = err.Error()
		}
		return rowErr(pos, "", ReasonMalformed, "malformed JSON: "+msg)
	}
	// The results alias line, which stays unchanged until the row is encoded.
	obj := gjson.Parse(b2s(line))
	if !obj.IsObject() {
		return rowErr(pos, "", ReasonMalformed, "malformed JSON: want an object, got "+jsonKind(obj))
	}
	clear(j.vals)
	obj.ForEach(func(k, v gjson.Result) bool {
		if slot, ok := j.index[k.Str]; ok {
			j.vals[slot] = v
		}
		return true
	})
	return jsonRow(b, pos, j.vals)
}

// jsonKind names the kind of a JSON value for messages.
func jsonKind(r gjson.Result) string {
	switch {
	case r.IsArray():
		return "an array"
	case r.Type == gjson.String:
		return "a string"
	case r.Type == gjson.Number:
		return "a number"
	case r.Type == gjson.True, r.Type == gjson.False:
		return "a boolean"
	case r.Type == gjson.Null:
		return "null"
	}
	return "an object"
}

// jsonRow encodes one row whose columns are JSON values (JSON lines, push
// requests); vals[slot] is the value of schema column slot, not Exists() when
// absent. null is Feast's null value for features and an error for join keys
// and the event time.
func jsonRow(b *batch, pos Pos, vals []gjson.Result) error {
	s := b.s
	for slot := range s.columns {
		if !vals[slot].Exists() {
			return rowErr(pos, "", ReasonMissingColumn, "missing column "+strconv.Quote(s.columns[slot].Name))
		}
	}
	b.begin(pos)
	for i := 0; i < s.nKeys; i++ {
		v := vals[i]
		col := &s.columns[i]
		if v.Type == gjson.Null {
			b.drop()
			return rowErr(pos, col.Name, ReasonMissingValue, "missing value")
		}
		ev, err := featurefetch.ParseEntityValue(col.Type, s2b(v.Raw))
		if err != nil {
			b.drop()
			return rowErr(pos, col.Name, ReasonWrongType, notAType(shortJSON(v.Raw), col.Type)+typeHint(col.Type, nil))
		}
		b.keys[i] = ev
	}
	if err := b.endKey(); err != nil {
		b.drop()
		return rowErr(pos, "", ReasonWrongType, err.Error())
	}
	tsCol := &s.columns[s.tsSlot()]
	tv := vals[s.tsSlot()]
	t, err := jsonTime(tv)
	if err != nil {
		b.drop()
		if tv.Type == gjson.Null {
			return rowErr(pos, tsCol.Name, ReasonMissingValue, "missing value")
		}
		return rowErr(pos, tsCol.Name, ReasonBadTimestamp, shortJSON(tv.Raw)+" "+errBadTimestamp.Error())
	}
	b.setTime(t)
	for slot := s.tsSlot() + 1; slot < len(s.columns); slot++ {
		v := vals[slot]
		col := &s.columns[slot]
		var err error
		if b.buf, err = featurefetch.AppendValue(b.buf, col.Type, s2b(v.Raw)); err != nil {
			b.drop()
			if !col.Type.IsList() {
				err = nil // the value shown says it all
			}
			return rowErr(pos, col.Name, ReasonWrongType, notAType(shortJSON(v.Raw), col.Type)+typeHint(col.Type, err))
		}
		b.endValue()
	}
	b.commit()
	return nil
}

// jsonTime converts an event time given as a string (see parseTimestamp) or
// as a number of epoch seconds.
func jsonTime(v gjson.Result) (t time.Time, err error) {
	switch v.Type {
	case gjson.String:
		return parseTimestamp(v.Str)
	case gjson.Number:
		if t, ok := parseEpoch(v.Raw); ok {
			return t, nil
		}
	}
	return t, errBadTimestamp
}
