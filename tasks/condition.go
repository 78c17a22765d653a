package tasks

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/lariat-gw/lariat/internal/jsonutil"
)

// Condition is a compiled boolean expression over a request, its headers
// and other tasks' results, as written in a switch case:
//
//	.request.country == "ID" && .tasks.fraud.body.score < 0.5
//	.headers.X-Beta || .request.user.tier >= 3
//
// A comparison is a reference, an operator (==, !=, <, <=, >, >=) and a
// JSON literal (a number, a double-quoted string, true, false or null).
// A bare reference is true when the value exists and is not false, null,
// 0 or "". && binds tighter than ||; parentheses group. References are
// those of templates: .request[.<path>], .headers.<Name>,
// .tasks.<task>.body[.<path>] and .tasks.<task>.status.
//
// Comparisons are typed: a number compares with numbers (a header is
// read as a number when compared with one), a string with strings, in
// byte order; a value of another type is never equal (!= is true). A
// missing value equals null.
type Condition struct {
	src   string
	nodes []condNode
	root  int
}

type condOp uint8

const (
	opTruthy condOp = iota
	opEq
	opNe
	opLt
	opLe
	opGt
	opGe
	opAnd
	opOr
)

var opNames = map[string]condOp{"==": opEq, "!=": opNe, "<": opLt, "<=": opLe, ">": opGt, ">=": opGe}

type condNode struct {
	op          condOp
	left, right int // operands of && and ||
	ref         part
	lit         gjson.Result
}

// Source returns the condition as written.
func (c *Condition) Source() string { return c.src }

// CompileCondition parses src; references to tasks and headers are
// resolved through scope. Errors give the offset of the problem in src.
func CompileCondition(src string, scope Scope) (*Condition, error) {
	p := &condParser{src: src, scope: scope, c: &Condition{src: src}}
	p.skipSpace()
	if p.pos == len(src) {
		return nil, fmt.Errorf("empty condition: write e.g. .request.country == \"ID\"")
	}
	root, err := p.parseOr(0)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos < len(src) {
		return nil, p.errorf("unexpected %s: expected && or || or the end", p.near())
	}
	p.c.root = root
	return p.c, nil
}

type condParser struct {
	src   string
	pos   int
	scope Scope
	c     *Condition
}

// maxConditionDepth bounds nesting of parentheses.
const maxConditionDepth = 32

func (p *condParser) errorf(format string, args ...any) error {
	return fmt.Errorf("at offset %d: %s", p.pos, fmt.Sprintf(format, args...))
}

// near quotes the text at the current position, for messages.
func (p *condParser) near() string {
	rest := p.src[p.pos:]
	if rest == "" {
		return "end of condition"
	}
	if len(rest) > 20 {
		rest = rest[:20] + "..."
	}
	return strconv.Quote(rest)
}

func (p *condParser) skipSpace() {
	for p.pos < len(p.src) && (p.src[p.pos] == ' ' || p.src[p.pos] == '\t' || p.src[p.pos] == '\n' || p.src[p.pos] == '\r') {
		p.pos++
	}
}

func (p *condParser) consume(tok string) bool {
	p.skipSpace()
	if strings.HasPrefix(p.src[p.pos:], tok) {
		p.pos += len(tok)
		return true
	}
	return false
}

func (p *condParser) add(n condNode) int {
	p.c.nodes = append(p.c.nodes, n)
	return len(p.c.nodes) - 1
}

func (p *condParser) parseOr(depth int) (int, error) {
	left, err := p.parseAnd(depth)
	if err != nil {
		return 0, err
	}
	for p.consume("||") {
		right, err := p.parseAnd(depth)
		if err != nil {
			return 0, err
		}
		left = p.add(condNode{op: opOr, left: left, right: right})
	}
	return left, nil
}

func (p *condParser) parseAnd(depth int) (int, error) {
	left, err := p.parseTerm(depth)
	if err != nil {
		return 0, err
	}
	for p.consume("&&") {
		right, err := p.parseTerm(depth)
		if err != nil {
			return 0, err
		}
		left = p.add(condNode{op: opAnd, left: left, right: right})
	}
	return left, nil
}

func (p *condParser) parseTerm(depth int) (int, error) {
	if p.consume("(") {
		if depth >= maxConditionDepth {
			return 0, p.errorf("parentheses nested too deeply")
		}
		n, err := p.parseOr(depth + 1)
		if err != nil {
			return 0, err
		}
		if !p.consume(")") {
			return 0, p.errorf("expected ), found %s", p.near())
		}
		return n, nil
	}
	p.skipSpace()
	if p.pos == len(p.src) || p.src[p.pos] != '.' {
		return 0, p.errorf("expected a reference such as .request.<path>, .headers.<Name> or .tasks.<task>.body.<path>, found %s", p.near())
	}
	start := p.pos
	for p.pos < len(p.src) && !strings.ContainsRune(" \t\r\n=!<>()&|", rune(p.src[p.pos])) {
		p.pos++
	}
	expr := p.src[start:p.pos]
	ref, err := compileRef(expr, p.scope)
	if err != nil {
		p.pos = start
		return 0, p.errorf("%v", err)
	}
	if ref.kind == refRequest || ref.kind == refRequestPath {
		p.scope.RequestRef()
	}
	p.skipSpace()
	opStart := p.pos
	for p.pos < len(p.src) && strings.ContainsRune("=!<>", rune(p.src[p.pos])) {
		p.pos++
	}
	if p.pos == opStart {
		return p.add(condNode{op: opTruthy, ref: ref}), nil
	}
	opText := p.src[opStart:p.pos]
	op, ok := opNames[opText]
	if !ok {
		p.pos = opStart
		return 0, p.errorf("unknown operator %q: use ==, !=, <, <=, > or >=", opText)
	}
	lit, err := p.parseLiteral()
	if err != nil {
		return 0, err
	}
	if op != opEq && op != opNe && lit.Type != gjson.Number && lit.Type != gjson.String {
		return 0, p.errorf("%s compares numbers or strings, not %s", opText, lit.Raw)
	}
	return p.add(condNode{op: op, ref: ref, lit: lit}), nil
}

// parseLiteral reads a JSON number, string, true, false or null.
func (p *condParser) parseLiteral() (gjson.Result, error) {
	p.skipSpace()
	start := p.pos
	if p.pos == len(p.src) {
		return gjson.Result{}, p.errorf("expected a value (a number, a \"string\", true, false or null), found the end")
	}
	switch c := p.src[p.pos]; {
	case c == '"':
		p.pos++
		for p.pos < len(p.src) && p.src[p.pos] != '"' {
			if p.src[p.pos] == '\\' {
				p.pos++
			}
			p.pos++
		}
		if p.pos >= len(p.src) {
			p.pos = start
			return gjson.Result{}, p.errorf("unclosed string")
		}
		p.pos++
	case c == '\'':
		return gjson.Result{}, p.errorf("strings take double quotes: \"...\"")
	case c == '-' || c >= '0' && c <= '9':
		for p.pos < len(p.src) && strings.IndexByte("+-0123456789.eE", p.src[p.pos]) >= 0 {
			p.pos++
		}
	default:
		for p.pos < len(p.src) && (p.src[p.pos] >= 'a' && p.src[p.pos] <= 'z' || p.src[p.pos] >= 'A' && p.src[p.pos] <= 'Z') {
			p.pos++
		}
	}
	raw := p.src[start:p.pos]
	if raw == "" || !gjson.Valid(raw) {
		p.pos = start
		return gjson.Result{}, p.errorf("expected a value (a number, a \"string\", true, false or null), found %s", p.near())
	}
	return gjson.Parse(raw), nil
}

// Eval evaluates the condition for x.
func (c *Condition) Eval(x *Exchange) bool { return c.eval(c.root, x) }

func (c *Condition) eval(i int, x *Exchange) bool {
	n := &c.nodes[i]
	switch n.op {
	case opAnd:
		return c.eval(n.left, x) && c.eval(n.right, x)
	case opOr:
		return c.eval(n.left, x) || c.eval(n.right, x)
	}
	v, header := refValue(&n.ref, x)
	if n.op == opTruthy {
		if header {
			return truthyHeader(v)
		}
		return truthy(v)
	}
	return compare(v, header, n.op, n.lit)
}

// refValue returns the value ref points at; header reports that it is a
// request header (plain text, not JSON).
func refValue(p *part, x *Exchange) (gjson.Result, bool) {
	switch p.kind {
	case refRequest:
		return gjson.Parse(jsonutil.B2S(x.Body)), false
	case refRequestPath:
		return gjson.Get(jsonutil.B2S(x.Body), p.path), false
	case refHeader:
		if !x.HeaderSet(p.slot) {
			return gjson.Result{}, true
		}
		s := jsonutil.B2S(x.Headers[p.slot])
		return gjson.Result{Type: gjson.String, Str: s, Raw: s}, true
	case refTaskBody:
		return gjson.Parse(jsonutil.B2S(x.Results[p.slot].Body)), false
	case refTaskPath:
		return gjson.Get(jsonutil.B2S(x.Results[p.slot].Body), p.path), false
	case refTaskStatus:
		st := x.Results[p.slot].Status
		return gjson.Result{Type: gjson.Number, Num: float64(st), Raw: "status"}, false
	case refTaskMissing:
		return gjson.ParseBytes(x.Results[p.slot].Missing), false
	}
	return gjson.Result{}, false
}

func truthy(v gjson.Result) bool {
	if !v.Exists() {
		return false
	}
	switch v.Type {
	case gjson.Null, gjson.False:
		return false
	case gjson.Number:
		return v.Num != 0
	case gjson.String:
		return v.Str != ""
	}
	return true
}

// truthyHeader reports whether a request header counts as true: it is
// present and neither blank, "false" (in any case) nor a number equal to 0
// ("0", "0.0").
func truthyHeader(v gjson.Result) bool {
	if !v.Exists() {
		return false
	}
	s := strings.TrimSpace(v.Str)
	if s == "" || strings.EqualFold(s, "false") {
		return false
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f == 0 {
		return false
	}
	return true
}

func compare(v gjson.Result, header bool, op condOp, lit gjson.Result) bool {
	if lit.Type == gjson.Null {
		isNull := !v.Exists() || v.Type == gjson.Null
		return isNull == (op == opEq)
	}
	var cmp int
	switch lit.Type {
	case gjson.Number:
		f, ok := v.Num, v.Type == gjson.Number
		if !ok && header && v.Exists() {
			var err error
			f, err = strconv.ParseFloat(strings.TrimSpace(v.Str), 64)
			ok = err == nil
		}
		if !ok {
			return op == opNe
		}
		switch {
		case f < lit.Num:
			cmp = -1
		case f > lit.Num:
			cmp = 1
		}
	case gjson.String:
		if v.Type != gjson.String {
			return op == opNe
		}
		cmp = strings.Compare(v.Str, lit.Str)
	default: // true or false
		if v.Type != gjson.True && v.Type != gjson.False {
			return op == opNe
		}
		if v.Type != lit.Type {
			cmp = 1
		}
	}
	switch op {
	case opEq:
		return cmp == 0
	case opNe:
		return cmp != 0
	case opLt:
		return cmp < 0
	case opLe:
		return cmp <= 0
	case opGt:
		return cmp > 0
	}
	return cmp >= 0
}
