package featurefetch

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"

	"github.com/lariat-gw/lariat/internal/jsonutil"
)

// Shape selects the JSON layout of Plan.Fetch results.
type Shape uint8

const (
	// ShapeRows is an array with one object per entity:
	// [{"driver_id":1001,"conv_rate":0.5,...}, ...]. Entity join keys are included.
	ShapeRows Shape = iota
	// ShapeColumns is exactly Feast's /get-online-features response:
	// {"metadata":{"feature_names":[...]},"results":[{"values":[...],"statuses":[...],"event_timestamps":[...]}, ...]}.
	ShapeColumns
)

// PlanOptions tunes a Plan.
type PlanOptions struct {
	// Defaults maps "view:feature" to the JSON used when the value is missing
	// (NOT_FOUND), stored as null (PRESENT, as in Feast), undecodable
	// (INVALID), or stale and dropped (DropStale). Statuses are unchanged by
	// defaults.
	Defaults map[string]json.RawMessage
	// MaxAge overrides a view's max age (its ttl) per view name. 0 keeps the
	// view's; a view max age of 0 means no limit.
	MaxAge map[string]time.Duration
	// DropStale replaces OUTSIDE_MAX_AGE values by the default or null; their
	// status stays OUTSIDE_MAX_AGE.
	DropStale bool
	// CacheTTL > 0 serves this plan's reads from the client-side cache (rueidis
	// DoMultiCache with RESP3 tracking), kept coherent by server invalidations,
	// for at most CacheTTL.
	CacheTTL time.Duration
	// Shape is ShapeRows or ShapeColumns.
	Shape Shape
	// FullNames names features "view__feature", like Feast's full_feature_names.
	FullNames bool
	// NullMissingRows writes null for the features of a view an entity has
	// no row in (see FetchReport), instead of their Defaults.
	NullMissingRows bool
	// JoinKeyOrder is the order of the entity columns in results, e.g. the
	// order in which a request names them; join keys it does not list
	// follow, sorted, and names that are not join keys of the plan are
	// ignored. It does not change the order of Fetch's keys.
	JoinKeyOrder []string
}

// Plan is a compiled read of a fixed feature list. Build it once (at route load)
// with Views.NewPlan and call Fetch per request; it is safe for concurrent use.
type Plan struct {
	project   string
	joinKeys  []string
	keyTypes  []ValueType
	keyJSON   [][]byte // `"driver_id":`
	keyOrder  []int    // output position -> index into joinKeys
	namesJSON []byte   // ShapeColumns: `,"conv_rate",...]},"results":[` after the join keys
	groups    []planGroup
	views     []planView
	features  []planFeature
	names     []string
	rowFields int
	cacheTTL  time.Duration
	dropStale bool
	nullRows  bool
	checkAge  bool
	shape     Shape
	header    []byte // ShapeColumns: `{"metadata":{"feature_names":[...]},"results":[`
}

// planGroup is one Redis hash per entity: the views sharing one join-key set.
type planGroup struct {
	// joinKeys are the group's join keys, sorted; keyIdx their indexes
	// into Plan.joinKeys. An entityless group has Feast's dummy key and
	// no keyIdx.
	joinKeys []string
	keyIdx   []int
	fields   []string
	offset   int // offset of the group's first field in a row's values
	views    []int
	nFeat    int
}

type planView struct {
	name    string
	group   int
	tsField int // absolute offset in a row's values
	maxAge  int64
	// fields are the absolute offsets of the view's features in a row's
	// values.
	fields []int
}

type planFeature struct {
	view    int
	field   int // absolute offset in a row's values
	def     []byte
	jsonKey []byte // `"conv_rate":`
	logKey  []byte // `"view":"driver_stats","name":"conv_rate","value":`
}

// NewPlan compiles a read of features ("view:feature") for project ("" means
// the file's project). It fails on unknown views or features, on output-name
// collisions (use FullNames) and on invalid options.
func (v *Views) NewPlan(project string, features []string, opt PlanOptions) (*Plan, error) {
	if project == "" {
		project = v.Project
	}
	if len(features) == 0 {
		return nil, fmt.Errorf("no features requested")
	}
	if opt.Shape != ShapeRows && opt.Shape != ShapeColumns {
		return nil, fmt.Errorf("unknown shape %d", opt.Shape)
	}
	p := &Plan{
		project:   project,
		cacheTTL:  opt.CacheTTL,
		dropStale: opt.DropStale,
		nullRows:  opt.NullMissingRows,
		shape:     opt.Shape,
	}
	viewIdx := map[string]int{}
	groupIdx := map[string]int{}
	outNames := map[string]string{}
	seen := map[string]bool{}
	type pending struct {
		ref  string
		view int
		pos  int // index within the group's features
	}
	var feats []pending
	var featNames []string
	for _, ref := range features {
		viewName, featName, ok := strings.Cut(ref, ":")
		if !ok || viewName == "" || featName == "" {
			return nil, fmt.Errorf("invalid feature reference %q; want \"view:feature\"", ref)
		}
		if seen[ref] {
			return nil, fmt.Errorf("feature %q requested twice", ref)
		}
		seen[ref] = true
		fv, ok := v.View(viewName)
		if !ok {
			return nil, fmt.Errorf("feature %q: unknown feature view %q", ref, viewName)
		}
		if _, ok := fv.Feature(featName); !ok {
			return nil, fmt.Errorf("feature %q: view %q has no feature %q", ref, viewName, featName)
		}
		out := featName
		if opt.FullNames {
			out = viewName + "__" + featName
		}
		if prev, dup := outNames[out]; dup {
			return nil, fmt.Errorf("features %q and %q both output as %q; request full feature names", prev, ref, out)
		}
		outNames[out] = ref
		vi, ok := viewIdx[viewName]
		if !ok {
			sig := strings.Join(fv.JoinKeys, "\x00")
			gi, ok := groupIdx[sig]
			if !ok {
				gi = len(p.groups)
				groupIdx[sig] = gi
				p.groups = append(p.groups, planGroup{})
				for _, jk := range fv.JoinKeys {
					if !slices.Contains(p.joinKeys, jk) {
						p.joinKeys = append(p.joinKeys, jk)
					}
				}
			}
			maxAge := fv.TTL
			if d, ok := opt.MaxAge[viewName]; ok && d != 0 {
				maxAge = d
			}
			vi = len(p.views)
			viewIdx[viewName] = vi
			p.views = append(p.views, planView{name: viewName, group: gi, maxAge: int64(maxAge)})
			p.groups[gi].views = append(p.groups[gi].views, vi)
			if maxAge > 0 {
				p.checkAge = true
			}
		}
		g := &p.groups[p.views[vi].group]
		g.fields = append(g.fields, FieldHash(viewName, featName))
		feats = append(feats, pending{ref: ref, view: vi, pos: g.nFeat})
		featNames = append(featNames, featName)
		g.nFeat++
		p.names = append(p.names, out)
	}
	for name, d := range opt.MaxAge {
		if _, ok := viewIdx[name]; !ok {
			return nil, fmt.Errorf("max age set for feature view %q, which the plan does not read", name)
		}
		if d < 0 {
			return nil, fmt.Errorf("max age of feature view %q must not be negative", name)
		}
	}
	for ref := range opt.Defaults {
		if !seen[ref] {
			return nil, fmt.Errorf("default set for feature %q, which the plan does not read", ref)
		}
	}

	slices.Sort(p.joinKeys)
	for _, jk := range p.joinKeys {
		if _, dup := outNames[jk]; dup {
			return nil, fmt.Errorf("feature %q has the same output name as join key %q; request full feature names", outNames[jk], jk)
		}
		e, _ := v.Entity(jk)
		p.keyTypes = append(p.keyTypes, e.Type)
		p.keyJSON = append(p.keyJSON, append(jsonutil.AppendString(nil, jk), ':'))
	}

	// Lay out each group's fields: features first, then one _ts field per view.
	off := 0
	for gi := range p.groups {
		g := &p.groups[gi]
		g.offset = off
		fv, _ := v.View(p.views[g.views[0]].name)
		g.joinKeys = fv.JoinKeys
		if len(fv.JoinKeys) == 0 {
			g.joinKeys = dummyJoinKeys
		}
		for _, jk := range fv.JoinKeys {
			g.keyIdx = append(g.keyIdx, slices.Index(p.joinKeys, jk))
		}
		for _, vi := range g.views {
			p.views[vi].tsField = off + len(g.fields)
			g.fields = append(g.fields, TimestampField(p.views[vi].name))
		}
		off += len(g.fields)
	}
	p.rowFields = off

	for _, jk := range opt.JoinKeyOrder {
		i := slices.Index(p.joinKeys, jk)
		if i < 0 {
			continue
		}
		if slices.Contains(p.keyOrder, i) {
			return nil, fmt.Errorf("join key order names %q twice", jk)
		}
		p.keyOrder = append(p.keyOrder, i)
	}
	for i := range p.joinKeys {
		if !slices.Contains(p.keyOrder, i) {
			p.keyOrder = append(p.keyOrder, i)
		}
	}

	for i, f := range feats {
		pf := planFeature{
			view:    f.view,
			field:   p.groups[p.views[f.view].group].offset + f.pos,
			jsonKey: append(jsonutil.AppendString(nil, p.names[i]), ':'),
		}
		lk := jsonutil.AppendString([]byte(`"view":`), p.views[f.view].name)
		lk = jsonutil.AppendString(append(lk, `,"name":`...), featNames[i])
		pf.logKey = append(lk, `,"value":`...)
		if d, ok := opt.Defaults[f.ref]; ok {
			var buf bytes.Buffer
			if err := json.Compact(&buf, d); err != nil {
				return nil, fmt.Errorf("default of feature %q is not valid JSON: %w", f.ref, err)
			}
			pf.def = buf.Bytes()
		}
		p.features = append(p.features, pf)
		p.views[f.view].fields = append(p.views[f.view].fields, pf.field)
	}

	if p.shape == ShapeColumns {
		var names []byte
		for i, name := range p.names {
			if i > 0 || len(p.joinKeys) > 0 {
				names = append(names, ',')
			}
			names = jsonutil.AppendString(names, name)
		}
		p.namesJSON = append(names, `]},"results":[`...)
		p.header = p.appendHeader(nil, p.keyOrder)
	}
	return p, nil
}

// appendHeader appends the start of a ShapeColumns result with the entity
// columns in order.
func (p *Plan) appendHeader(dst []byte, order []int) []byte {
	dst = append(dst, `{"metadata":{"feature_names":[`...)
	for i, ki := range order {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonutil.AppendString(dst, p.joinKeys[ki])
	}
	return append(dst, p.namesJSON...)
}

// JoinKeys returns the join keys Fetch needs, sorted: the order of its keys.
// Results name them in PlanOptions.JoinKeyOrder.
func (p *Plan) JoinKeys() []string {
	return p.joinKeys
}

// FeatureNames returns the output names of the features, in request order.
func (p *Plan) FeatureNames() []string {
	return p.names
}

type span struct{ start, end int32 }

// fetchState is per-request scratch space, reused through fetchPool.
type fetchState struct {
	parsed []gjson.Result
	// ent holds the bytes of STRING and BYTES entity values and the JSON
	// echo of every entity value.
	ent     []byte
	entVals []EntityValue // per (join key, row); Str points into ent
	entRaw  []span        // per (join key, row): STRING and BYTES bytes in ent
	entJSON []span        // per (join key, row): JSON echo
	keyVals []EntityValue // the values of one Redis key
	keyBuf  []byte
	keyEnds []int
	reads   []HashRead
	vals    []FieldValue
	ts      []int64 // per (row, view): event time in unix nanos
	tsOK    []bool
	tsJSON  []byte // ShapeColumns: formatted event times
	tsSpan  []span // per (row, view): span into tsJSON
	status  []Status
	// absent marks the (row, view) pairs the store has no row for.
	absent []bool
}

var fetchPool = sync.Pool{New: func() any { return new(fetchState) }}

// maxPooledBytes keeps unusually large scratch buffers out of the pool.
const maxPooledBytes = 1 << 20

func releaseFetchState(st *fetchState) {
	if cap(st.ent) > maxPooledBytes || cap(st.keyBuf) > maxPooledBytes || cap(st.tsJSON) > maxPooledBytes ||
		cap(st.vals) > maxPooledBytes/16 {
		return
	}
	clear(st.parsed)
	clear(st.reads)
	clear(st.vals)
	fetchPool.Put(st)
}

// Fetch reads every feature of every entity in one round trip and appends the
// JSON result to dst.
//
// keys[i] is the raw JSON value of JoinKeys()[i]: a scalar (one entity) or an
// array (one element per entity). Arrays must have equal lengths; scalars are
// repeated for every entity. Values are converted to the join key's declared
// type ("1001" and 1001 both work for INT64). Bad keys yield a *BadRequestError.
// Store errors (Redis down, ctx deadline) are returned as they are; dst is then
// returned unchanged.
func (p *Plan) Fetch(ctx context.Context, s Store, keys [][]byte, dst []byte) ([]byte, error) {
	out, _, err := p.FetchReport(ctx, s, keys, dst, nil)
	return out, err
}

// FetchReport is Fetch that also reports the entities the store has no
// row for: an entity is missing when, for one of the views read, the
// store holds neither its event time nor any of the features read. When
// some are, it appends to missing a JSON array of their join keys,
// [{"driver_id":1003}, ...], and returns it; otherwise it returns missing
// unchanged.
func (p *Plan) FetchReport(ctx context.Context, s Store, keys [][]byte, dst, missing []byte) (result, missingOut []byte, err error) {
	result, missingOut, _, err = p.fetch(ctx, s, keys, p.keyOrder, dst, missing, nil, false)
	return result, missingOut, err
}

// FetchLogged is FetchReport that also appends to log, for the prediction
// log, every value served with its status and event time: a JSON array
// with one object per entity and feature, entity by entity, e.g.
//
//	[{"entity":{"driver_id":1001},"view":"driver_stats","name":"conv_rate",
//	  "value":0.5,"status":"PRESENT","event_time":"2026-05-01T13:00:00Z"}, ...]
//
// The value is the one served (the default when the stored one was
// missing); event_time is left out when the entity has no timestamp for
// the view. On error, log is returned unchanged.
func (p *Plan) FetchLogged(ctx context.Context, s Store, keys [][]byte, dst, missing, log []byte) (result, missingOut, logOut []byte, err error) {
	return p.fetch(ctx, s, keys, p.keyOrder, dst, missing, log, true)
}

// fetch is FetchReport with the entity columns of the result in order
// (output position -> index into joinKeys).
// With logged set, it appends the values served to log (see FetchLogged).
func (p *Plan) fetch(ctx context.Context, s Store, keys [][]byte, order []int, dst, missing, log []byte, logged bool) (result, missingOut, logOut []byte, err error) {
	if len(keys) != len(p.joinKeys) {
		return dst, missing, log, badRequestf("got %d join key values, want %d (%s)", len(keys), len(p.joinKeys), strings.Join(p.joinKeys, ", "))
	}
	st := fetchPool.Get().(*fetchState)
	defer releaseFetchState(st)

	n, err := p.parseKeys(st, keys)
	if err != nil {
		return dst, missing, log, err
	}

	// Build one Redis key per (row, group), all in one string.
	st.keyBuf = st.keyBuf[:0]
	st.keyEnds = st.keyEnds[:0]
	for r := 0; r < n; r++ {
		for gi := range p.groups {
			g := &p.groups[gi]
			vals := dummyEntity
			if len(g.keyIdx) > 0 {
				st.keyVals = st.keyVals[:0]
				for _, ki := range g.keyIdx {
					st.keyVals = append(st.keyVals, st.entVals[ki*n+r])
				}
				vals = st.keyVals
			}
			if st.keyBuf, err = AppendEntityKey(st.keyBuf, p.project, g.joinKeys, vals); err != nil {
				return dst, missing, log, fmt.Errorf("BUG: %w", err)
			}
			st.keyEnds = append(st.keyEnds, len(st.keyBuf))
		}
	}
	// One allocation for all keys: the store (and rueidis' cache) may keep them.
	allKeys := string(st.keyBuf)
	st.reads = st.reads[:0]
	start := 0
	for i, end := range st.keyEnds {
		st.reads = append(st.reads, HashRead{Key: allKeys[start:end], Fields: p.groups[i%len(p.groups)].fields})
		start = end
	}

	st.vals, err = s.ReadHashes(ctx, st.reads, p.cacheTTL, st.vals[:0])
	if ke := (*KeyError)(nil); errors.As(err, &ke) && ke.Read < len(st.reads) {
		return dst, missing, log, p.keyError(st, n, ke)
	}
	if err != nil {
		return dst, missing, log, err
	}
	if len(st.vals) != n*p.rowFields {
		return dst, missing, log, fmt.Errorf("store returned %d values, want %d", len(st.vals), n*p.rowFields)
	}

	var now int64
	if p.checkAge {
		now = time.Now().UnixNano()
	}
	p.decodeTimestamps(st, n)
	missing = p.findAbsent(st, n, missing)
	if logged {
		log = p.appendLog(st, n, now, log)
	}
	if p.shape == ShapeColumns {
		return p.appendColumns(st, n, now, order, dst), missing, log, nil
	}
	return p.appendRows(st, n, now, order, dst), missing, log, nil
}

// keyError returns ke with the entity and views of its read named.
func (p *Plan) keyError(st *fetchState, n int, ke *KeyError) *KeyError {
	g := &p.groups[ke.Read%len(p.groups)]
	e := p.appendEntity(nil, st, n, ke.Read/len(p.groups))
	e = append(e, " in view"...)
	if len(g.views) > 1 {
		e = append(e, 's')
	}
	for i, vi := range g.views {
		if i > 0 {
			e = append(e, ',')
		}
		e = append(e, ' ')
		e = append(e, p.views[vi].name...)
	}
	return &KeyError{Read: ke.Read, Entity: string(e), Err: ke.Err}
}

// findAbsent marks the (row, view) pairs with no row in the store and
// appends the missing entities to missing as FetchReport describes.
func (p *Plan) findAbsent(st *fetchState, n int, missing []byte) []byte {
	nv := len(p.views)
	st.absent = slices.Grow(st.absent[:0], n*nv)[:n*nv]
	listed := false
	for r := 0; r < n; r++ {
		row := st.vals[r*p.rowFields : (r+1)*p.rowFields]
		rowMissing := false
		for vi := range p.views {
			v := &p.views[vi]
			absent := !row[v.tsField].Found
			for _, f := range v.fields {
				absent = absent && !row[f].Found
			}
			st.absent[r*nv+vi] = absent
			rowMissing = rowMissing || absent
		}
		if !rowMissing {
			continue
		}
		if listed {
			missing = append(missing, ',')
		} else {
			missing = append(missing, '[')
			listed = true
		}
		missing = p.appendEntity(missing, st, n, r)
	}
	if listed {
		missing = append(missing, ']')
	}
	return missing
}

// appendEntity appends the join keys of row r as a JSON object.
func (p *Plan) appendEntity(dst []byte, st *fetchState, n, r int) []byte {
	dst = append(dst, '{')
	for i, ki := range p.keyOrder {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, p.keyJSON[ki]...)
		sp := st.entJSON[ki*n+r]
		dst = append(dst, st.ent[sp.start:sp.end]...)
	}
	return append(dst, '}')
}

// parseKeys converts every join key value, storing its key serialization and
// JSON echo per row, and returns the number of rows.
func (p *Plan) parseKeys(st *fetchState, keys [][]byte) (int, error) {
	st.parsed = st.parsed[:0]
	n := -1
	for i, raw := range keys {
		if !gjson.ValidBytes(raw) {
			return 0, badRequestf("join key %q: invalid JSON value", p.joinKeys[i])
		}
		r := gjson.Parse(jsonutil.B2S(raw))
		st.parsed = append(st.parsed, r)
		if r.IsArray() {
			cnt := 0
			r.ForEach(func(_, _ gjson.Result) bool { cnt++; return true })
			if n >= 0 && cnt != n {
				return 0, badRequestf("join key %q has %d values, other join keys have %d", p.joinKeys[i], cnt, n)
			}
			n = cnt
		}
	}
	if n < 0 {
		n = 1
	}
	st.ent = st.ent[:0]
	st.entVals = st.entVals[:0]
	st.entRaw = st.entRaw[:0]
	st.entJSON = st.entJSON[:0]
	for i, r := range st.parsed {
		typ := p.keyTypes[i]
		if !r.IsArray() {
			if err := p.addEntity(st, i, typ, r, 0); err != nil {
				return 0, err
			}
			last := len(st.entVals) - 1
			for j := 1; j < n; j++ {
				st.entVals = append(st.entVals, st.entVals[last])
				st.entRaw = append(st.entRaw, st.entRaw[last])
				st.entJSON = append(st.entJSON, st.entJSON[last])
			}
			continue
		}
		var err error
		row := 0
		r.ForEach(func(_, e gjson.Result) bool {
			err = p.addEntity(st, i, typ, e, row)
			row++
			return err == nil
		})
		if err != nil {
			return 0, err
		}
	}
	// ent no longer grows: the values can point into it.
	for i, sp := range st.entRaw {
		if t := st.entVals[i].Type; t == TypeString || t == TypeBytes {
			st.entVals[i].Str = jsonutil.B2S(st.ent[sp.start:sp.end])
		}
	}
	return n, nil
}

// addEntity converts entity e of join key ki to typ. It records the
// value, with the bytes of STRING and BYTES values in st.ent (Str is set
// once every value is parsed), and appends the value's JSON echo to st.ent.
func (p *Plan) addEntity(st *fetchState, ki int, typ ValueType, e gjson.Result, row int) error {
	ev := EntityValue{Type: typ}
	rawStart := int32(len(st.ent))
	var jsonStart int32
	switch typ {
	case TypeInt32, TypeInt64:
		v, err := parseJSONInt(e, typ)
		if err != nil {
			return badRequestf("join key %q, entity %d: %s", p.joinKeys[ki], row, err)
		}
		ev.Int = v
		jsonStart = int32(len(st.ent))
		st.ent = strconv.AppendInt(st.ent, v, 10)
	case TypeString:
		s, err := parseJSONKeyString(e)
		if err != nil {
			return badRequestf("join key %q, entity %d: %s", p.joinKeys[ki], row, err)
		}
		st.ent = append(st.ent, s...)
		jsonStart = int32(len(st.ent))
		st.ent = jsonutil.AppendString(st.ent, s)
	case TypeBytes:
		if e.Type != gjson.String {
			return badRequestf("join key %q, entity %d: want a base64 string", p.joinKeys[ki], row)
		}
		var err error
		st.ent, err = base64.StdEncoding.AppendDecode(st.ent, jsonutil.S2B(e.Str))
		if err != nil {
			return badRequestf("join key %q, entity %d: invalid base64", p.joinKeys[ki], row)
		}
		jsonStart = int32(len(st.ent))
		st.ent = append(st.ent, '"')
		st.ent = base64.StdEncoding.AppendEncode(st.ent, st.ent[rawStart:jsonStart])
		st.ent = append(st.ent, '"')
	default:
		return badRequestf("join key %q has type %s, which cannot be used in an entity key", p.joinKeys[ki], typ)
	}
	st.entVals = append(st.entVals, ev)
	st.entRaw = append(st.entRaw, span{rawStart, jsonStart})
	st.entJSON = append(st.entJSON, span{jsonStart, int32(len(st.ent))})
	return nil
}

func (p *Plan) decodeTimestamps(st *fetchState, n int) {
	nv := len(p.views)
	st.ts = slices.Grow(st.ts[:0], n*nv)[:n*nv]
	st.tsOK = slices.Grow(st.tsOK[:0], n*nv)[:n*nv]
	for r := 0; r < n; r++ {
		row := st.vals[r*p.rowFields : (r+1)*p.rowFields]
		for vi := range p.views {
			i := r*nv + vi
			st.ts[i], st.tsOK[i] = 0, false
			fv := row[p.views[vi].tsField]
			if !fv.Found {
				continue
			}
			sec, nsec, err := decodeTimestamp(jsonutil.S2B(fv.Data))
			if err != nil {
				continue
			}
			st.ts[i], st.tsOK[i] = unixNano(sec, nsec), true
		}
	}
}

// unixNano converts with saturation instead of overflow.
func unixNano(sec int64, nsec int32) int64 {
	const maxSec = math.MaxInt64/int64(time.Second) - 1
	switch {
	case sec > maxSec:
		return math.MaxInt64
	case sec < -maxSec:
		return math.MinInt64
	}
	return sec*int64(time.Second) + int64(nsec)
}

// appendCell appends the value of feature f in row r and returns its status.
// As in Feast, a stored null (an empty Value or null_val) is PRESENT with the
// value null, and the age check comes first: a stale null is OUTSIDE_MAX_AGE.
func (p *Plan) appendCell(dst []byte, st *fetchState, r int, f *planFeature, now int64) ([]byte, Status) {
	fv := st.vals[r*p.rowFields+f.field]
	if !fv.Found {
		return p.appendNotFound(dst, st, r, f), StatusNotFound
	}
	start := len(dst)
	dst, isNull, err := AppendValueJSON(dst, jsonutil.S2B(fv.Data))
	if err != nil {
		return p.appendMissing(dst, f), StatusInvalid
	}
	status := StatusPresent
	if v := &p.views[f.view]; v.maxAge > 0 {
		ts := st.ts[r*len(p.views)+f.view]
		// A missing timestamp counts as the epoch, as in Feast's Go server.
		if now-ts > v.maxAge {
			status = StatusOutsideMaxAge
			if p.dropStale {
				return p.appendMissing(dst[:start], f), status
			}
		}
	}
	if isNull && f.def != nil {
		dst = append(dst[:start], f.def...)
	}
	return dst, status
}

// appendNotFound appends the value of feature f, which row r lacks: null
// when the row is missing from the view and NullMissingRows is set, else
// as appendMissing does.
func (p *Plan) appendNotFound(dst []byte, st *fetchState, r int, f *planFeature) []byte {
	if p.nullRows && st.absent[r*len(p.views)+f.view] {
		return append(dst, "null"...)
	}
	return p.appendMissing(dst, f)
}

func (p *Plan) appendMissing(dst []byte, f *planFeature) []byte {
	if f.def != nil {
		return append(dst, f.def...)
	}
	return append(dst, "null"...)
}

func (p *Plan) appendRows(st *fetchState, n int, now int64, order []int, dst []byte) []byte {
	dst = append(dst, '[')
	for r := 0; r < n; r++ {
		if r > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '{')
		for i, ki := range order {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, p.keyJSON[ki]...)
			sp := st.entJSON[ki*n+r]
			dst = append(dst, st.ent[sp.start:sp.end]...)
		}
		for fi := range p.features {
			if fi > 0 || len(p.joinKeys) > 0 {
				dst = append(dst, ',')
			}
			f := &p.features[fi]
			dst = append(dst, f.jsonKey...)
			dst, _ = p.appendCell(dst, st, r, f, now)
		}
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

// appendLog appends the prediction-log form of the values (see
// FetchLogged).
func (p *Plan) appendLog(st *fetchState, n int, now int64, dst []byte) []byte {
	dst = append(dst, '[')
	nv := len(p.views)
	for r := 0; r < n; r++ {
		var entStart, entEnd int
		for fi := range p.features {
			if r > 0 || fi > 0 {
				dst = append(dst, ',')
			}
			if fi == 0 {
				entStart = len(dst)
				dst = append(dst, `{"entity":`...)
				dst = p.appendEntity(dst, st, n, r)
				dst = append(dst, ',')
				entEnd = len(dst)
			} else {
				// Repeat the entity of the row's first feature.
				dst = append(dst, dst[entStart:entEnd]...)
			}
			f := &p.features[fi]
			dst = append(dst, f.logKey...)
			var status Status
			dst, status = p.appendCell(dst, st, r, f, now)
			dst = append(dst, `,"status":"`...)
			dst = append(dst, status.String()...)
			dst = append(dst, '"')
			if i := r*nv + f.view; st.tsOK[i] {
				dst = append(dst, `,"event_time":"`...)
				dst = appendRFC3339(dst, st.ts[i])
				dst = append(dst, '"')
			}
			dst = append(dst, '}')
		}
	}
	return append(dst, ']')
}

const epochJSON = `"1970-01-01T00:00:00Z"`

func (p *Plan) appendColumns(st *fetchState, n int, now int64, order []int, dst []byte) []byte {
	if slices.Equal(order, p.keyOrder) {
		dst = append(dst, p.header...)
	} else {
		dst = p.appendHeader(dst, order)
	}
	for i, ki := range order {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"values":[`...)
		for r := 0; r < n; r++ {
			if r > 0 {
				dst = append(dst, ',')
			}
			sp := st.entJSON[ki*n+r]
			dst = append(dst, st.ent[sp.start:sp.end]...)
		}
		dst = append(dst, `],"statuses":[`...)
		for r := 0; r < n; r++ {
			if r > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `"PRESENT"`...)
		}
		dst = append(dst, `],"event_timestamps":[`...)
		for r := 0; r < n; r++ {
			if r > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, epochJSON...)
		}
		dst = append(dst, "]}"...)
	}
	st.status = slices.Grow(st.status[:0], n)[:n]
	// Format each (row, view) event time once; features of a view share it.
	nv := len(p.views)
	st.tsJSON = st.tsJSON[:0]
	st.tsSpan = st.tsSpan[:0]
	for i := range st.ts {
		if i >= nv && st.tsOK[i] && st.tsOK[i-nv] && st.ts[i] == st.ts[i-nv] {
			// The rows of a batch often share their event time.
			st.tsSpan = append(st.tsSpan, st.tsSpan[i-nv])
			continue
		}
		start := int32(len(st.tsJSON))
		if st.tsOK[i] {
			st.tsJSON = append(st.tsJSON, '"')
			st.tsJSON = appendRFC3339(st.tsJSON, st.ts[i])
			st.tsJSON = append(st.tsJSON, '"')
		} else {
			st.tsJSON = append(st.tsJSON, epochJSON...)
		}
		st.tsSpan = append(st.tsSpan, span{start, int32(len(st.tsJSON))})
	}
	for fi := range p.features {
		if fi > 0 || len(p.joinKeys) > 0 {
			dst = append(dst, ',')
		}
		f := &p.features[fi]
		dst = append(dst, `{"values":[`...)
		for r := 0; r < n; r++ {
			if r > 0 {
				dst = append(dst, ',')
			}
			dst, st.status[r] = p.appendCell(dst, st, r, f, now)
		}
		dst = append(dst, `],"statuses":[`...)
		for r := 0; r < n; r++ {
			if r > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '"')
			dst = append(dst, st.status[r].String()...)
			dst = append(dst, '"')
		}
		dst = append(dst, `],"event_timestamps":[`...)
		for r := 0; r < n; r++ {
			if r > 0 {
				dst = append(dst, ',')
			}
			sp := st.tsSpan[r*nv+f.view]
			dst = append(dst, st.tsJSON[sp.start:sp.end]...)
		}
		dst = append(dst, "]}"...)
	}
	return append(dst, "]}"...)
}
