package server

import (
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/lariat-gw/lariat/registry"
)

type searchKind int

const (
	searchModels searchKind = iota
	searchVersions
	searchRuns
)

type filterClause struct {
	key    string // attribute name, or tag key when tag is set
	tag    bool
	param  bool      // runs: params.<key>
	metric bool      // runs: metrics.<key>, compared as numbers
	floats []float64 // metric and time values
	op     string    // "=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE", "IN", "NOT IN"
	values []string
	re     *regexp.Regexp // LIKE / ILIKE
	nums   []int64        // numeric values for version comparisons
	// missingMatches makes a missing tag satisfy the clause (the prompt
	// exclusion); otherwise a clause on a missing tag is false.
	missingMatches bool
}

// isPromptTag is the tag MLflow marks prompts with; models and versions
// without it are not prompts.
const isPromptTag = "mlflow.prompt.is_prompt"

type searchFilter []filterClause

var modelAttrs = map[string]string{"name": "name"}

// runAttrs are the attributes of runs/search, as MLflow names them.
var runAttrs = map[string]string{
	"run_id":          "run_id",
	"run_name":        "run_name",
	"status":          "status",
	"user_id":         "user_id",
	"artifact_uri":    "artifact_uri",
	"start_time":      "start_time",
	"end_time":        "end_time",
	"lifecycle_stage": "lifecycle_stage",
}

var versionAttrs = map[string]string{
	"name":             "name",
	"version":          "version",
	"version_number":   "version",
	"run_id":           "run_id",
	"source_path":      "source",
	"source":           "source",
	"current_stage":    "current_stage",
	"status":           "status",
	"training_job":     "training_job",
	"serving_endpoint": "serving_endpoint",
}

// filterLexer splits a filter string into tokens.
type filterLexer struct {
	s   string
	pos int
}

type tokenKind int

const (
	tokEOF tokenKind = iota
	tokIdent
	tokString
	tokNumber
	tokOp
	tokLParen
	tokRParen
	tokComma
	tokDot
)

type token struct {
	kind tokenKind
	text string
	// quoted is set for identifiers written in backticks or double quotes.
	quoted bool
}

func (l *filterLexer) next() (token, error) {
	for l.pos < len(l.s) && (l.s[l.pos] == ' ' || l.s[l.pos] == '\t' || l.s[l.pos] == '\n' || l.s[l.pos] == '\r') {
		l.pos++
	}
	if l.pos >= len(l.s) {
		return token{kind: tokEOF}, nil
	}
	c := l.s[l.pos]
	switch {
	case c == '(':
		l.pos++
		return token{kind: tokLParen, text: "("}, nil
	case c == ')':
		l.pos++
		return token{kind: tokRParen, text: ")"}, nil
	case c == ',':
		l.pos++
		return token{kind: tokComma, text: ","}, nil
	case c == '.':
		l.pos++
		return token{kind: tokDot, text: "."}, nil
	case c == '\'' || c == '"' || c == '`':
		start := l.pos
		l.pos++
		var b strings.Builder
		for l.pos < len(l.s) {
			ch := l.s[l.pos]
			if ch == c {
				// A doubled quote inside a string stands for itself.
				if l.pos+1 < len(l.s) && l.s[l.pos+1] == c {
					b.WriteByte(c)
					l.pos += 2
					continue
				}
				l.pos++
				kind := tokString
				if c == '`' {
					kind = tokIdent
				}
				return token{kind: kind, text: b.String(), quoted: true}, nil
			}
			b.WriteByte(ch)
			l.pos++
		}
		return token{}, registry.InvalidParameter("Invalid filter %q: unterminated quote at position %d", l.s, start)
	case c == '=' || c == '!' || c == '<' || c == '>':
		start := l.pos
		l.pos++
		if l.pos < len(l.s) && (l.s[l.pos] == '=' || (c == '<' && l.s[l.pos] == '>')) {
			l.pos++
		}
		op := l.s[start:l.pos]
		switch op {
		case "==":
			op = "="
		case "<>":
			op = "!="
		case "!":
			return token{}, registry.InvalidParameter("Invalid filter %q: unexpected '!' at position %d", l.s, start)
		}
		return token{kind: tokOp, text: op}, nil
	case c == '-' || (c >= '0' && c <= '9'):
		start := l.pos
		l.pos++
		for l.pos < len(l.s) && (l.s[l.pos] >= '0' && l.s[l.pos] <= '9' || l.s[l.pos] == '.') {
			l.pos++
		}
		return token{kind: tokNumber, text: l.s[start:l.pos]}, nil
	case c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z'):
		start := l.pos
		for l.pos < len(l.s) {
			ch := l.s[l.pos]
			if ch == '_' || (ch|0x20 >= 'a' && ch|0x20 <= 'z') || (ch >= '0' && ch <= '9') {
				l.pos++
				continue
			}
			break
		}
		return token{kind: tokIdent, text: l.s[start:l.pos]}, nil
	}
	return token{}, registry.InvalidParameter("Invalid filter %q: unexpected character %q at position %d", l.s, c, l.pos)
}

// parseFilter parses a search filter for the given kind of search.
func parseFilter(s string, kind searchKind) (searchFilter, error) {
	l := &filterLexer{s: s}
	var f searchFilter
	tok, err := l.next()
	if err != nil {
		return nil, err
	}
	if tok.kind == tokEOF {
		return f.excludePrompts(kind), nil
	}
	for {
		c, next, err := parseClause(l, tok, kind)
		if err != nil {
			return nil, err
		}
		f = append(f, c)
		if next.kind == tokEOF {
			return f.excludePrompts(kind), nil
		}
		if next.kind != tokIdent || next.quoted || !strings.EqualFold(next.text, "AND") {
			return nil, registry.InvalidParameter("Invalid filter %q: expected AND or end of filter, got %q", s, next.text)
		}
		if tok, err = l.next(); err != nil {
			return nil, err
		}
	}
}

// excludePrompts applies MLflow's handling of the prompt marker tag: unless
// the first clause on it asks for prompts, its clauses are replaced by one
// that leaves out what is tagged is_prompt = 'true' (and keeps what has no
// such tag).
func (f searchFilter) excludePrompts(kind searchKind) searchFilter {
	if kind == searchRuns {
		return f
	}
	for _, c := range f {
		if c.tag && c.key == isPromptTag {
			v := strings.ToLower(c.values[0])
			if c.op == "=" && v == "true" || c.op == "!=" && v == "false" {
				return f
			}
			break
		}
	}
	f = slices.DeleteFunc(f, func(c filterClause) bool { return c.tag && c.key == isPromptTag })
	return append(f, filterClause{key: isPromptTag, tag: true, op: "!=", values: []string{"true"}, missingMatches: true})
}

// parseClause parses "key op value" starting at tok and returns the token after it.
func parseClause(l *filterLexer, tok token, kind searchKind) (filterClause, token, error) {
	var c filterClause
	if tok.kind != tokIdent {
		return c, tok, registry.InvalidParameter("Invalid filter %q: expected an attribute, got %q", l.s, tok.text)
	}
	next, err := l.next()
	if err != nil {
		return c, tok, err
	}
	if next.kind == tokDot {
		prefix := strings.ToLower(tok.text)
		switch {
		case prefix == "tags" || prefix == "tag":
			c.tag = true
		case kind == searchRuns && (prefix == "params" || prefix == "param" || prefix == "parameters" || prefix == "parameter"):
			c.param = true
		case kind == searchRuns && (prefix == "metrics" || prefix == "metric"):
			c.metric = true
		case kind == searchRuns && (prefix == "attributes" || prefix == "attribute" || prefix == "attr" || prefix == "run"):
		case kind == searchRuns:
			return c, tok, registry.InvalidParameter("Invalid filter %q: unknown entity %q (want metrics, params, tags or attributes)", l.s, tok.text)
		default:
			return c, tok, registry.InvalidParameter("Invalid filter %q: unknown entity %q (only tags.<key> is supported)", l.s, tok.text)
		}
		keyTok, err := l.next()
		if err != nil {
			return c, tok, err
		}
		if keyTok.kind != tokIdent && keyTok.kind != tokString {
			return c, tok, registry.InvalidParameter("Invalid filter %q: expected a key after %q", l.s, tok.text+".")
		}
		c.key = keyTok.text
		tok = keyTok // an attribute's name
		if next, err = l.next(); err != nil {
			return c, tok, err
		}
		// An unquoted key may hold dots, as in tags.mlflow.runName.
		for keyTok.kind == tokIdent && !keyTok.quoted && next.kind == tokDot {
			part, err := l.next()
			if err != nil {
				return c, tok, err
			}
			if part.kind != tokIdent || part.quoted {
				return c, tok, registry.InvalidParameter("Invalid filter %q: expected a key part after %q", l.s, c.key+".")
			}
			c.key += "." + part.text
			if next, err = l.next(); err != nil {
				return c, tok, err
			}
		}
	}
	if !c.tag && !c.param && !c.metric {
		attrs := modelAttrs
		switch kind {
		case searchVersions:
			attrs = versionAttrs
		case searchRuns:
			attrs = runAttrs
		}
		attr, ok := attrs[strings.ToLower(tok.text)]
		if !ok {
			return c, tok, registry.InvalidParameter("Invalid filter %q: invalid attribute key %q", l.s, tok.text)
		}
		c.key = attr
	}

	// Operator.
	switch {
	case next.kind == tokOp:
		c.op = next.text
	case next.kind == tokIdent && !next.quoted:
		switch strings.ToUpper(next.text) {
		case "LIKE", "ILIKE", "IN":
			c.op = strings.ToUpper(next.text)
		case "NOT":
			in, err := l.next()
			if err != nil {
				return c, tok, err
			}
			if in.kind != tokIdent || !strings.EqualFold(in.text, "IN") {
				return c, tok, registry.InvalidParameter("Invalid filter %q: expected IN after NOT", l.s)
			}
			c.op = "NOT IN"
		}
	}
	if c.op == "" {
		return c, tok, registry.InvalidParameter("Invalid filter %q: expected a comparison operator after %q, got %q", l.s, c.key, next.text)
	}

	// Value or list of values.
	if c.op == "IN" || c.op == "NOT IN" {
		lp, err := l.next()
		if err != nil {
			return c, tok, err
		}
		if lp.kind != tokLParen {
			return c, tok, registry.InvalidParameter("Invalid filter %q: expected '(' after %s", l.s, c.op)
		}
		for {
			v, err := l.next()
			if err != nil {
				return c, tok, err
			}
			if v.kind != tokString && v.kind != tokNumber {
				return c, tok, registry.InvalidParameter("Invalid filter %q: expected a value in the %s list, got %q", l.s, c.op, v.text)
			}
			c.values = append(c.values, v.text)
			sep, err := l.next()
			if err != nil {
				return c, tok, err
			}
			if sep.kind == tokRParen {
				break
			}
			if sep.kind != tokComma {
				return c, tok, registry.InvalidParameter("Invalid filter %q: expected ',' or ')' in the %s list", l.s, c.op)
			}
		}
	} else {
		v, err := l.next()
		if err != nil {
			return c, tok, err
		}
		if v.kind != tokString && v.kind != tokNumber {
			return c, tok, registry.InvalidParameter("Invalid filter %q: expected a quoted value after %s, got %q", l.s, c.op, v.text)
		}
		c.values = []string{v.text}
	}

	if err := c.compile(l.s); err != nil {
		return c, tok, err
	}
	after, err := l.next()
	return c, after, err
}

func (c *filterClause) compile(filter string) error {
	if c.metric || !c.tag && !c.param && (c.key == "start_time" || c.key == "end_time") {
		if c.op == "LIKE" || c.op == "ILIKE" || c.op == "IN" || c.op == "NOT IN" {
			return registry.InvalidParameter("Invalid filter %q: %s is not supported on %s, a number", filter, c.op, c.key)
		}
		for _, v := range c.values {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return registry.InvalidParameter("Invalid filter %q: %s must be compared with a number, got %q", filter, c.key, v)
			}
			c.floats = append(c.floats, f)
		}
		return nil
	}
	if c.key == "version" && !c.tag {
		if c.op == "LIKE" || c.op == "ILIKE" {
			return registry.InvalidParameter("Invalid filter %q: %s is not supported on version", filter, c.op)
		}
		for _, v := range c.values {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return registry.InvalidParameter("Invalid filter %q: version must be an integer, got %q", filter, v)
			}
			c.nums = append(c.nums, n)
		}
		return nil
	}
	switch c.op {
	case "<", "<=", ">", ">=":
		return registry.InvalidParameter("Invalid filter %q: operator %s is only supported on version", filter, c.op)
	case "LIKE", "ILIKE":
		var b strings.Builder
		b.WriteString("(?s)")
		if c.op == "ILIKE" {
			b.WriteString("(?i)")
		}
		b.WriteByte('^')
		for _, r := range c.values[0] {
			switch r {
			case '%':
				b.WriteString(".*")
			case '_':
				b.WriteByte('.')
			default:
				b.WriteString(regexp.QuoteMeta(string(r)))
			}
		}
		b.WriteByte('$')
		re, err := regexp.Compile(b.String())
		if err != nil {
			return registry.InvalidParameter("Invalid filter %q: bad pattern %q", filter, c.values[0])
		}
		c.re = re
	}
	return nil
}

func (c *filterClause) matchString(s string) bool {
	switch c.op {
	case "=":
		return s == c.values[0]
	case "!=":
		return s != c.values[0]
	case "LIKE", "ILIKE":
		return c.re.MatchString(s)
	case "IN", "NOT IN":
		return slices.Contains(c.values, s) == (c.op == "IN")
	}
	return false
}

func (c *filterClause) matchFloat(f float64) bool {
	switch c.op {
	case "=":
		return f == c.floats[0]
	case "!=":
		return f != c.floats[0]
	case "<":
		return f < c.floats[0]
	case "<=":
		return f <= c.floats[0]
	case ">":
		return f > c.floats[0]
	case ">=":
		return f >= c.floats[0]
	}
	return false
}

func (c *filterClause) matchNumber(n int64) bool {
	switch c.op {
	case "=":
		return n == c.nums[0]
	case "!=":
		return n != c.nums[0]
	case "<":
		return n < c.nums[0]
	case "<=":
		return n <= c.nums[0]
	case ">":
		return n > c.nums[0]
	case ">=":
		return n >= c.nums[0]
	case "IN", "NOT IN":
		return slices.Contains(c.nums, n) == (c.op == "IN")
	}
	return false
}

// matchTag matches a tag clause; a missing tag matches nothing, as in MLflow's
// SQL store, except for the prompt exclusion.
func (c *filterClause) matchTag(tags []registry.Tag) bool {
	v, ok := tagValue(tags, c.key)
	if !ok {
		return c.missingMatches
	}
	return c.matchString(v)
}

func (f searchFilter) matchModel(m *ModelRecord) bool {
	for i := range f {
		c := &f[i]
		if c.tag {
			if !c.matchTag(m.Tags) {
				return false
			}
			continue
		}
		if !c.matchString(m.Name) {
			return false
		}
	}
	return true
}

func (f searchFilter) matchVersion(v *registry.ModelVersion) bool {
	for i := range f {
		c := &f[i]
		var ok bool
		switch {
		case c.tag:
			ok = c.matchTag(v.Tags)
		case c.key == "version":
			n, err := strconv.ParseInt(v.Version, 10, 64)
			ok = err == nil && c.matchNumber(n)
		default:
			ok = c.matchString(versionAttr(v, c.key))
		}
		if !ok {
			return false
		}
	}
	return true
}

func versionAttr(v *registry.ModelVersion, key string) string {
	switch key {
	case "name":
		return v.Name
	case "run_id":
		return v.RunID
	case "source":
		return v.Source
	case "current_stage":
		return v.CurrentStage
	case "status":
		return v.Status
	case "training_job":
		return v.TrainingJob
	case "serving_endpoint":
		return v.ServingEndpoint
	}
	return ""
}

// nameEquals returns the model name when the filter pins it with name = '...', so a
// version search reads only that model's versions.
func (f searchFilter) nameEquals() (string, bool) {
	for _, c := range f {
		if !c.tag && c.key == "name" && c.op == "=" {
			return c.values[0], true
		}
	}
	return "", false
}

var modelOrderFields = map[string]string{
	"name":                   "name",
	"timestamp":              "creation_timestamp",
	"creation_timestamp":     "creation_timestamp",
	"last_updated_timestamp": "last_updated_timestamp",
}

var versionOrderFields = map[string]string{
	"name":                   "name",
	"version_number":         "version",
	"version":                "version",
	"timestamp":              "creation_timestamp",
	"creation_timestamp":     "creation_timestamp",
	"last_updated_timestamp": "last_updated_timestamp",
}

// parseOrderBy parses clauses such as "name ASC" or "last_updated_timestamp DESC" and
// appends the default tie-breakers of the search kind.
func parseOrderBy(clauses []string, kind searchKind) ([]orderKey, error) {
	fields := modelOrderFields
	if kind == searchVersions {
		fields = versionOrderFields
	}
	var keys []orderKey
	seen := map[string]bool{}
	for _, clause := range clauses {
		parts := strings.Fields(clause)
		if len(parts) == 0 || len(parts) > 2 {
			return nil, registry.InvalidParameter("Invalid order_by clause %q", clause)
		}
		field, ok := fields[strings.ToLower(parts[0])]
		if !ok {
			return nil, registry.InvalidParameter("Invalid order_by clause %q: unknown key %q", clause, parts[0])
		}
		desc := false
		if len(parts) == 2 {
			switch strings.ToUpper(parts[1]) {
			case "ASC":
			case "DESC":
				desc = true
			default:
				return nil, registry.InvalidParameter("Invalid order_by clause %q: expected ASC or DESC", clause)
			}
		}
		if seen[field] {
			return nil, registry.InvalidParameter("Invalid order_by: key %q given twice", parts[0])
		}
		seen[field] = true
		keys = append(keys, orderKey{field: field, desc: desc})
	}
	defaults := []orderKey{{field: "name"}}
	if kind == searchVersions {
		if len(keys) == 0 {
			keys = append(keys, orderKey{field: "last_updated_timestamp", desc: true})
			seen["last_updated_timestamp"] = true
		}
		defaults = []orderKey{{field: "name"}, {field: "version", desc: true}}
	}
	for _, d := range defaults {
		if !seen[d.field] {
			keys = append(keys, d)
		}
	}
	return keys, nil
}
