package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
)

// Template is a request body with placeholders, parsed once and rendered per
// request without allocating. Placeholders:
//
//	{{seq}}         the request's sequence number: 0 for the first request
//	                of the run, 1 for the second, ...
//	{{rand A B}}    a uniformly random integer in [A, B] (A <= B)
//
// Spaces inside the braces are allowed. Any other "{{...}}" is an error.
type Template struct {
	parts []tmplPart
	size  int // rendered size hint
}

type tmplKind uint8

const (
	partLit tmplKind = iota
	partSeq
	partRand
)

type tmplPart struct {
	kind tmplKind
	lit  []byte
	lo   int64
	span uint64 // hi - lo + 1
}

// ParseTemplate parses a body template.
func ParseTemplate(s string) (*Template, error) {
	t := &Template{}
	rest := s
	for rest != "" {
		i := strings.Index(rest, "{{")
		if i < 0 {
			t.addLit(rest)
			break
		}
		t.addLit(rest[:i])
		end := strings.Index(rest[i:], "}}")
		if end < 0 {
			return nil, fmt.Errorf("body template: unclosed placeholder at offset %d", len(s)-len(rest)+i)
		}
		p, err := parsePlaceholder(rest[i+2 : i+end])
		if err != nil {
			return nil, fmt.Errorf("body template: %w", err)
		}
		t.parts = append(t.parts, p)
		t.size += 20
		rest = rest[i+end+2:]
	}
	return t, nil
}

func (t *Template) addLit(s string) {
	if s == "" {
		return
	}
	t.parts = append(t.parts, tmplPart{kind: partLit, lit: []byte(s)})
	t.size += len(s)
}

func parsePlaceholder(s string) (tmplPart, error) {
	f := strings.Fields(s)
	switch {
	case len(f) == 1 && f[0] == "seq":
		return tmplPart{kind: partSeq}, nil
	case len(f) == 3 && f[0] == "rand":
		lo, err1 := strconv.ParseInt(f[1], 10, 64)
		hi, err2 := strconv.ParseInt(f[2], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return tmplPart{}, fmt.Errorf("placeholder {{%s}}: bounds must be integers: %w", s, err)
		}
		if lo > hi {
			return tmplPart{}, fmt.Errorf("placeholder {{%s}}: lower bound is above upper bound", s)
		}
		span := uint64(hi) - uint64(lo) + 1
		if span == 0 {
			span = math.MaxUint64 // the whole int64 range; Uint64N never returns it
		}
		return tmplPart{kind: partRand, lo: lo, span: span}, nil
	}
	return tmplPart{}, fmt.Errorf("unknown placeholder {{%s}}: want {{seq}} or {{rand A B}}", s)
}

// Append renders the template for request number seq onto dst, drawing random
// values from rng, and returns the extended slice.
func (t *Template) Append(dst []byte, seq uint64, rng *rand.Rand) []byte {
	for i := range t.parts {
		p := &t.parts[i]
		switch p.kind {
		case partLit:
			dst = append(dst, p.lit...)
		case partSeq:
			dst = strconv.AppendUint(dst, seq, 10)
		case partRand:
			dst = strconv.AppendInt(dst, p.lo+int64(rng.Uint64N(p.span)), 10)
		}
	}
	return dst
}

// ReadBodies reads request bodies, one JSON document a line (JSONL). Blank
// lines are skipped; each other line must be valid JSON.
func ReadBodies(r io.Reader) ([][]byte, error) {
	br := bufio.NewReader(r)
	var bodies [][]byte
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("cannot read bodies at line %d: %w", line, err)
		}
		if trimmed := bytes.TrimSpace(b); len(trimmed) > 0 {
			if !json.Valid(trimmed) {
				return nil, fmt.Errorf("bodies line %d is not valid JSON", line)
			}
			bodies = append(bodies, bytes.Clone(trimmed))
		}
		if err != nil {
			break
		}
	}
	if len(bodies) == 0 {
		return nil, errors.New("no bodies found: want one JSON document a line")
	}
	return bodies, nil
}

// LoadBodies reads a JSONL file of request bodies; see ReadBodies.
func LoadBodies(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot open bodies file: %w", err)
	}
	defer f.Close()
	bodies, err := ReadBodies(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return bodies, nil
}
