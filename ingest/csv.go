package ingest

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// csvSource reads a CSV file whose first record names the columns. Columns
// the view does not need are ignored.
type csvSource struct {
	name    string
	r       *csv.Reader
	nFields int
	index   []int // schema slot -> record field
	rec     []string
}

func newCSVSource(name string, r io.Reader, s *Schema) (*csvSource, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", name, ErrEmptyFile)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: cannot read the header: %w", name, err)
	}
	header = append([]string(nil), header...)
	if len(header) > 0 {
		header[0] = strings.TrimPrefix(header[0], "\ufeff")
	}
	pos := make(map[string]int, len(header))
	for i, h := range header {
		if _, dup := pos[h]; dup {
			pos[h] = -1
			continue
		}
		pos[h] = i
	}
	src := &csvSource{name: name, r: cr, nFields: len(header), index: make([]int, len(s.columns))}
	for slot, col := range s.columns {
		i, ok := pos[col.Name]
		switch {
		case !ok:
			return nil, fmt.Errorf("%s:1: missing column %q", name, col.Name)
		case i < 0:
			return nil, fmt.Errorf("%s:1: duplicate column %q", name, col.Name)
		}
		src.index[slot] = i
	}
	return src, nil
}

func (c *csvSource) next(b *batch) error {
	rec, err := c.r.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return rowErr(Pos{File: c.name, Line: int64(pe.StartLine)}, "", ReasonMalformed, "malformed CSV: "+pe.Err.Error())
		}
		return fmt.Errorf("%s: cannot read: %w", c.name, err)
	}
	line, _ := c.r.FieldPos(0)
	pos := Pos{File: c.name, Line: int64(line)}
	if len(rec) != c.nFields {
		return rowErr(pos, "", ReasonMalformed, "malformed CSV: "+strconv.Itoa(len(rec))+" fields, the header has "+strconv.Itoa(c.nFields))
	}
	c.rec = rec
	return textRow(b, pos, c.cell)
}

func (c *csvSource) cell(slot int) string {
	return c.rec[c.index[slot]]
}
