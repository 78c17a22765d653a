package ingest

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/deprecated"
	"github.com/parquet-go/parquet-go/format"

	"github.com/lariat-gw/lariat/featurefetch"
)

// parquetSource reads the row groups of a Parquet file one after the other,
// a few rows at a time. A column maps to the top-level field of its name;
// lists are repeated fields (plain or the LIST logical type) of the element
// type, or strings holding JSON arrays. Positions are 0-based: row group G,
// row R within it.
type parquetSource struct {
	name   string
	f      *parquet.File
	cols   []pqColumn // per schema slot
	leaves int
	done   *atomic.Int64 // rows read, for progress

	rg        int
	rows      parquet.Rows
	groupDone bool
	buf       []parquet.Row
	n, i      int
	rowIdx    int64 // next row within the row group
	starts    []int // per leaf column: first value of the current row
	elems     []parquet.Value
}

// pqColumn is how one schema column is read from its leaf column.
type pqColumn struct {
	leaf   int
	kind   parquet.Kind
	list   bool // a repeated leaf
	repDef int  // definition level of the repeated node
	maxDef int
	unit   time.Duration // unit of an INT64 timestamp; 0 if not a timestamp
	date   bool          // DATE: days since the epoch
}

// pqRowsPerRead is the number of rows read from a row group at a time.
const pqRowsPerRead = 128

func newParquetSource(name string, r io.ReaderAt, size int64, s *Schema, done *atomic.Int64) (*parquetSource, error) {
	if size == 0 {
		return nil, fmt.Errorf("%s: %w", name, ErrEmptyFile)
	}
	f, err := parquet.OpenFile(r, size)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot read parquet file: %w", name, err)
	}
	// Arrow's Go writer (before v18) marks the root group "repeated" by
	// default; its pages, like every reader's, take no level from the root.
	rootLevels := 0
	if md := f.Metadata(); len(md.Schema) > 0 && md.Schema[0].RepetitionType.Valid && md.Schema[0].RepetitionType.V == format.Repeated {
		rootLevels = 1
	}
	paths := f.Schema().Columns()
	src := &parquetSource{
		name:   name,
		f:      f,
		cols:   make([]pqColumn, len(s.columns)),
		leaves: len(paths),
		done:   done,
		buf:    make([]parquet.Row, pqRowsPerRead),
		starts: make([]int, len(paths)+1),
	}
	for slot, col := range s.columns {
		var path []string
		for _, p := range paths {
			if p[0] != col.Name {
				continue
			}
			if path != nil {
				return nil, fmt.Errorf("%s: column %q is a group of several columns, which is not supported", name, col.Name)
			}
			path = p
		}
		if path == nil {
			return nil, fmt.Errorf("%s: missing column %q", name, col.Name)
		}
		pc, err := pqColumnOf(f.Schema(), path, rootLevels)
		if err != nil {
			return nil, fmt.Errorf("%s: column %q: %w", name, col.Name, err)
		}
		if err := pc.check(col); err != nil {
			return nil, fmt.Errorf("%s: column %q: %w", name, col.Name, err)
		}
		src.cols[slot] = pc
	}
	return src, nil
}

// pqColumnOf describes the leaf at path. rootLevels (0 or 1) is the
// repetition and definition level a repeated root group adds to every leaf
// in the schema but not in the data.
func pqColumnOf(schema *parquet.Schema, path []string, rootLevels int) (pqColumn, error) {
	leaf, ok := schema.Lookup(path...)
	if !ok {
		return pqColumn{}, errors.New("not a leaf column")
	}
	maxRep := leaf.MaxRepetitionLevel - rootLevels
	if maxRep > 1 {
		return pqColumn{}, errors.New("nested lists are not supported")
	}
	pc := pqColumn{
		leaf:   leaf.ColumnIndex,
		kind:   leaf.Node.Type().Kind(),
		list:   maxRep == 1,
		maxDef: leaf.MaxDefinitionLevel - rootLevels,
	}
	// The definition level reached at the repeated node tells an empty list
	// (one below it) from a null list and from null elements.
	var node parquet.Node = schema
	level := 0
	for _, name := range path {
		var next parquet.Node
		for _, fld := range node.Fields() {
			if fld.Name() == name {
				next = fld
				break
			}
		}
		if next == nil {
			return pqColumn{}, errors.New("not a leaf column")
		}
		node = next
		if node.Optional() || node.Repeated() {
			level++
		}
		if node.Repeated() && pc.repDef == 0 {
			pc.repDef = level
		}
	}
	typ := leaf.Node.Type()
	if lt := typ.LogicalType(); lt != nil {
		switch v := lt.Value.(type) {
		case *format.TimestampType:
			if v.Unit.Value != nil {
				pc.unit = v.Unit.Value.Duration()
			}
		case *format.DateType:
			pc.date = true
		}
	}
	if ct := typ.ConvertedType(); ct != nil && pc.unit == 0 {
		switch *ct {
		case deprecated.TimestampMillis:
			pc.unit = time.Millisecond
		case deprecated.TimestampMicros:
			pc.unit = time.Microsecond
		case deprecated.Date:
			pc.date = true
		}
	}
	return pc, nil
}

// check reports whether values of the leaf can be read as col.
func (pc *pqColumn) check(col Column) error {
	k := pc.kind
	if k == parquet.ByteArray && !pc.list {
		return nil // text, parsed per value; JSON arrays for lists
	}
	if col.Kind == TimestampColumn {
		if pc.list {
			return errors.New("a list cannot be an event time")
		}
		switch k {
		case parquet.Int32, parquet.Int64, parquet.Int96, parquet.Float, parquet.Double:
			return nil
		}
		return fmt.Errorf("parquet type %s cannot be read as an event time", k)
	}
	typ := col.Type
	if typ.IsList() != pc.list {
		if pc.list {
			return fmt.Errorf("a repeated field cannot be read as %s", typ)
		}
		return fmt.Errorf("parquet type %s cannot be read as %s", k, typ)
	}
	elem := typ
	if typ.IsList() {
		elem = typ - 10
	}
	ok := false
	switch elem {
	case featurefetch.TypeInt32, featurefetch.TypeInt64:
		// Floats holding integers, as pandas stores integer columns with nulls.
		ok = k == parquet.Int32 || k == parquet.Int64 || k == parquet.Float || k == parquet.Double
	case featurefetch.TypeFloat, featurefetch.TypeDouble:
		ok = k == parquet.Float || k == parquet.Double || k == parquet.Int32 || k == parquet.Int64
	case featurefetch.TypeBool:
		ok = k == parquet.Boolean
	case featurefetch.TypeString:
		ok = k == parquet.ByteArray || k == parquet.FixedLenByteArray || col.Kind == KeyColumn && (k == parquet.Int32 || k == parquet.Int64)
	case featurefetch.TypeBytes:
		ok = k == parquet.ByteArray || k == parquet.FixedLenByteArray
	case featurefetch.TypeUnixTimestamp:
		ok = k == parquet.Int32 || k == parquet.Int64 || k == parquet.Int96
	}
	if !ok {
		return fmt.Errorf("parquet type %s cannot be read as %s", k, typ)
	}
	return nil
}

func (p *parquetSource) next(b *batch) error {
	for p.i >= p.n {
		if err := p.fill(); err != nil {
			return err
		}
	}
	row := p.buf[p.i]
	pos := Pos{File: p.name, RowGroup: p.rg, Row: p.rowIdx, kind: posRowGroup}
	p.i++
	p.rowIdx++
	p.done.Add(1)
	if err := p.index(row); err != nil {
		return rowErr(pos, "", ReasonMalformed, err.Error())
	}
	return p.row(b, pos, row)
}

// fill reads the next rows, moving to the next row group when one ends.
func (p *parquetSource) fill() error {
	groups := p.f.RowGroups()
	for {
		if p.rows != nil && p.groupDone {
			_ = p.rows.Close()
			p.rows = nil
			p.rg++
		}
		if p.rows == nil {
			if p.rg >= len(groups) {
				return io.EOF
			}
			p.rows = groups[p.rg].Rows()
			p.rowIdx = 0
			p.groupDone = false
		}
		n, err := p.rows.ReadRows(p.buf)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: row group %d: cannot read rows: %w", p.name, p.rg, err)
		}
		p.n, p.i = n, 0
		if err != nil || n == 0 {
			// Rows returned with io.EOF are served before moving on.
			p.groupDone = true
		}
		if n > 0 {
			return nil
		}
	}
}

// close releases the open row group.
func (p *parquetSource) close() {
	if p.rows != nil {
		_ = p.rows.Close()
		p.rows = nil
	}
}

// index finds where each leaf column's values start in row.
func (p *parquetSource) index(row parquet.Row) error {
	c := -1
	for i, v := range row {
		col := v.Column()
		if col < c || col >= p.leaves {
			return errors.New("malformed row: values out of column order")
		}
		for c < col {
			c++
			p.starts[c] = i
		}
	}
	if c != p.leaves-1 {
		return errors.New("malformed row: missing columns")
	}
	p.starts[p.leaves] = len(row)
	return nil
}

func (p *parquetSource) values(row parquet.Row, slot int) []parquet.Value {
	leaf := p.cols[slot].leaf
	return row[p.starts[leaf]:p.starts[leaf+1]]
}

func (p *parquetSource) row(b *batch, pos Pos, row parquet.Row) error {
	s := b.s
	b.begin(pos)
	for i := 0; i < s.nKeys; i++ {
		col := &s.columns[i]
		v := p.values(row, i)[0]
		if v.IsNull() {
			b.drop()
			return rowErr(pos, col.Name, ReasonMissingValue, "missing value")
		}
		ev, err := pqEntity(col.Type, v)
		if err != nil {
			b.drop()
			return rowErr(pos, col.Name, ReasonWrongType, notAType(pqShow(v), col.Type)+typeHint(col.Type, err))
		}
		b.keys[i] = ev
	}
	if err := b.endKey(); err != nil {
		b.drop()
		return rowErr(pos, "", ReasonWrongType, err.Error())
	}
	slot := s.tsSlot()
	tsCol := &s.columns[slot]
	v := p.values(row, slot)[0]
	if v.IsNull() {
		b.drop()
		return rowErr(pos, tsCol.Name, ReasonMissingValue, "missing value")
	}
	t, err := pqTime(&p.cols[slot], v)
	if err != nil {
		b.drop()
		return rowErr(pos, tsCol.Name, ReasonBadTimestamp, pqShow(v)+" "+errBadTimestamp.Error())
	}
	if err := checkTime(pos, tsCol.Name, t); err != nil {
		b.drop()
		return err
	}
	b.setTime(t)
	for slot := s.tsSlot() + 1; slot < len(s.columns); slot++ {
		col := &s.columns[slot]
		pc := &p.cols[slot]
		vals := p.values(row, slot)
		var err error
		var shown string
		if pc.list {
			b.buf, shown, err = p.appendList(b.buf, pc, col.Type, vals)
		} else if !vals[0].IsNull() {
			b.buf, err = pqAppendValue(b.buf, pc, col.Type, vals[0])
			if err != nil {
				shown = pqShow(vals[0])
			}
		}
		if err != nil {
			b.drop()
			return rowErr(pos, col.Name, ReasonWrongType, notAType(shown, col.Type)+typeHint(col.Type, err))
		}
		b.endValue()
	}
	b.commit()
	return nil
}

// pqShow formats a Parquet value for messages.
func pqShow(v parquet.Value) string {
	switch v.Kind() {
	case parquet.ByteArray, parquet.FixedLenByteArray:
		return quoteCell(string(v.ByteArray()))
	case parquet.Boolean:
		return strconv.FormatBool(v.Boolean())
	case parquet.Int32:
		return strconv.FormatInt(int64(v.Int32()), 10)
	case parquet.Int64:
		return strconv.FormatInt(v.Int64(), 10)
	case parquet.Float:
		return strconv.FormatFloat(float64(v.Float()), 'g', -1, 32)
	case parquet.Double:
		return strconv.FormatFloat(v.Double(), 'g', -1, 64)
	}
	return v.String()
}

// pqInt returns an integer value, also one held by a float (7.0, not 7.5);
// ok is false for other kinds and values.
func pqInt(v parquet.Value) (int64, bool) {
	switch v.Kind() {
	case parquet.Int32:
		return int64(v.Int32()), true
	case parquet.Int64:
		return v.Int64(), true
	case parquet.Float, parquet.Double:
		f := pqFloat(v)
		// -2^63 is exact as a float64; 2^63 is not an int64.
		if f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
			return 0, false
		}
		return int64(f), true
	}
	return 0, false
}

func pqEntity(typ featurefetch.ValueType, v parquet.Value) (featurefetch.EntityValue, error) {
	if v.Kind() == parquet.ByteArray || v.Kind() == parquet.FixedLenByteArray {
		if typ == featurefetch.TypeBytes {
			return featurefetch.EntityValue{Type: typ, Str: b2s(v.ByteArray())}, nil
		}
		return entityFromText(typ, b2s(v.ByteArray()))
	}
	n, ok := pqInt(v)
	if !ok {
		return featurefetch.EntityValue{}, errNotValue
	}
	switch typ {
	case featurefetch.TypeInt32:
		if n < math.MinInt32 || n > math.MaxInt32 {
			return featurefetch.EntityValue{}, errNotValue
		}
		return featurefetch.EntityValue{Type: typ, Int: n}, nil
	case featurefetch.TypeInt64:
		return featurefetch.EntityValue{Type: typ, Int: n}, nil
	case featurefetch.TypeString:
		return featurefetch.EntityValue{Type: typ, Str: strconv.FormatInt(n, 10)}, nil
	}
	return featurefetch.EntityValue{}, errNotValue
}

// pqTime converts an event time: TIMESTAMP (or the legacy INT96), DATE,
// other numbers as epoch seconds, strings as parseTimestamp reads them.
func pqTime(pc *pqColumn, v parquet.Value) (time.Time, error) {
	switch v.Kind() {
	case parquet.ByteArray:
		return parseTimestamp(b2s(v.ByteArray()))
	case parquet.Int96:
		// Nanoseconds of the day (low 8 bytes) and the Julian day number.
		i := v.Int96()
		nanos := int64(uint64(i[1])<<32 | uint64(i[0]))
		days := int64(i[2]) - 2440588
		return time.Unix(days*86400, nanos).UTC(), nil
	case parquet.Float, parquet.Double:
		f := v.Double()
		if v.Kind() == parquet.Float {
			f = float64(v.Float())
		}
		if math.IsNaN(f) || math.Abs(f) > maxEpochSeconds {
			return time.Time{}, errBadTimestamp
		}
		sec := math.Floor(f)
		return time.Unix(int64(sec), int64(math.Round((f-sec)*1e9))).UTC(), nil
	}
	n, ok := pqInt(v)
	if !ok {
		return time.Time{}, errBadTimestamp
	}
	switch {
	case pc.date:
		return time.Unix(n*86400, 0).UTC(), nil
	case pc.unit > 0:
		perSec := int64(time.Second / pc.unit)
		sec, rem := n/perSec, n%perSec
		if rem < 0 {
			sec--
			rem += perSec
		}
		return time.Unix(sec, rem*int64(pc.unit)).UTC(), nil
	}
	if n > maxEpochSeconds || n < -62135596800 {
		return time.Time{}, errBadTimestamp
	}
	return time.Unix(n, 0).UTC(), nil
}

// pqAppendValue appends a non-null scalar value converted to typ.
func pqAppendValue(dst []byte, pc *pqColumn, typ featurefetch.ValueType, v parquet.Value) ([]byte, error) {
	k := v.Kind()
	if k == parquet.ByteArray || k == parquet.FixedLenByteArray {
		switch typ {
		case featurefetch.TypeBytes:
			return appendBytesValue(dst, typ, v.ByteArray()), nil
		case featurefetch.TypeString:
			if !utf8.Valid(v.ByteArray()) {
				return dst, errors.New("string is not valid UTF-8")
			}
			return appendBytesValue(dst, typ, v.ByteArray()), nil
		}
		return appendTextValue(dst, typ, b2s(v.ByteArray()))
	}
	switch typ {
	case featurefetch.TypeInt32, featurefetch.TypeInt64:
		n, ok := pqInt(v)
		if !ok || typ == featurefetch.TypeInt32 && (n < math.MinInt32 || n > math.MaxInt32) {
			return dst, errNotValue
		}
		return appendVarintValue(dst, typ, uint64(n)), nil
	case featurefetch.TypeFloat:
		return appendFloatValue(dst, float32(pqFloat(v))), nil
	case featurefetch.TypeDouble:
		return appendDoubleValue(dst, pqFloat(v)), nil
	case featurefetch.TypeBool:
		var u uint64
		if v.Boolean() {
			u = 1
		}
		return appendVarintValue(dst, typ, u), nil
	case featurefetch.TypeUnixTimestamp:
		t, err := pqTime(pc, v)
		if err != nil {
			return dst, errNotValue
		}
		return appendVarintValue(dst, typ, uint64(t.Unix())), nil
	}
	return dst, errNotValue
}

// pqFloat returns a numeric value as float64.
func pqFloat(v parquet.Value) float64 {
	switch v.Kind() {
	case parquet.Float:
		return float64(v.Float())
	case parquet.Double:
		return v.Double()
	}
	n, _ := pqInt(v)
	return float64(n)
}

// appendList appends the list held by the values of a repeated leaf. On
// error it returns how to show the offending value.
func (p *parquetSource) appendList(dst []byte, pc *pqColumn, typ featurefetch.ValueType, vals []parquet.Value) ([]byte, string, error) {
	if len(vals) == 1 && vals[0].DefinitionLevel() < pc.repDef {
		if vals[0].DefinitionLevel() < pc.repDef-1 {
			return dst, "", nil // null list
		}
		vals = vals[:0] // empty list
	}
	start := len(dst)
	dst, lw := beginList(dst, typ)
	elem := typ - 10
	for i, v := range vals {
		if v.DefinitionLevel() < pc.maxDef {
			return dst[:start], "null", fmt.Errorf("element %d: null is not allowed in lists", i)
		}
		switch elem {
		case featurefetch.TypeBytes:
			dst = lw.appendBytes(dst, v.ByteArray())
		case featurefetch.TypeString:
			if !utf8.Valid(v.ByteArray()) {
				return dst[:start], pqShow(v), fmt.Errorf("element %d: string is not valid UTF-8", i)
			}
			dst = lw.appendBytes(dst, v.ByteArray())
		case featurefetch.TypeFloat:
			dst = lw.appendFloat(dst, float32(pqFloat(v)))
		case featurefetch.TypeDouble:
			dst = lw.appendDouble(dst, pqFloat(v))
		case featurefetch.TypeBool:
			var u uint64
			if v.Boolean() {
				u = 1
			}
			dst = lw.appendVarint(dst, u)
		case featurefetch.TypeUnixTimestamp:
			t, err := pqTime(pc, v)
			if err != nil {
				return dst[:start], pqShow(v), fmt.Errorf("element %d: not a timestamp", i)
			}
			dst = lw.appendVarint(dst, uint64(t.Unix()))
		default: // INT32, INT64
			n, ok := pqInt(v)
			if !ok {
				return dst[:start], pqShow(v), fmt.Errorf("element %d: not an integer", i)
			}
			if elem == featurefetch.TypeInt32 && (n < math.MinInt32 || n > math.MaxInt32) {
				return dst[:start], pqShow(v), fmt.Errorf("element %d: out of range", i)
			}
			dst = lw.appendVarint(dst, uint64(n))
		}
	}
	return lw.end(dst), "", nil
}
