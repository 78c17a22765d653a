package featurefetch

import (
	"context"
	"fmt"
	"slices"

	"github.com/tidwall/gjson"

	"github.com/lariat-gw/lariat/internal/jsonutil"
)

// BadRequestError reports a request the caller must fix (HTTP 400). Message is
// suitable for a JSON error body.
type BadRequestError struct {
	Message string
}

// Error returns the message.
func (e *BadRequestError) Error() string {
	return e.Message
}

func badRequestf(format string, args ...any) error {
	return &BadRequestError{Message: fmt.Sprintf(format, args...)}
}

// maxCachedPlans bounds the plans AppendOnlineFeatures keeps per Views.
const maxCachedPlans = 256

// AppendOnlineFeatures serves Feast's POST /get-online-features: it reads the
// request JSON ({"features": ["view:feature", ...], "entities": {"join_key":
// [values...]}, "full_feature_names": bool}) and appends Feast's
// column-oriented response JSON to dst. Plans for repeated feature lists are
// cached (at most 256 per Views). Request errors are *BadRequestError values.
// Extra entity columns that no requested feature needs are ignored; the
// others are answered in the order the request names them.
func (v *Views) AppendOnlineFeatures(ctx context.Context, s Store, reqBody []byte, dst []byte) ([]byte, error) {
	if !gjson.ValidBytes(reqBody) {
		return dst, badRequestf("request body is not valid JSON")
	}
	req := gjson.Parse(jsonutil.B2S(reqBody)) // results alias reqBody only during this call
	if !req.IsObject() {
		return dst, badRequestf("request body must be a JSON object")
	}
	var features, entities, fullNames gjson.Result
	var unsupported string
	req.ForEach(func(k, val gjson.Result) bool {
		switch k.Str {
		case "features":
			features = val
		case "entities":
			entities = val
		case "full_feature_names":
			fullNames = val
		case "feature_service":
			unsupported = "feature_service is not supported; list the features"
		case "request_context":
			if val.IsObject() && len(val.Map()) > 0 {
				unsupported = "request_context is not supported"
			}
		}
		return true
	})
	if unsupported != "" {
		return dst, badRequestf("%s", unsupported)
	}
	if !features.IsArray() {
		return dst, badRequestf(`"features" must be a list of "view:feature" strings`)
	}
	full := false
	switch fullNames.Type {
	case gjson.True:
		full = true
	case gjson.False, gjson.Null:
	default:
		if fullNames.Exists() {
			return dst, badRequestf(`"full_feature_names" must be a boolean`)
		}
	}
	if !entities.IsObject() {
		return dst, badRequestf(`"entities" must be an object mapping join keys to lists of values`)
	}

	p, err := v.cachedPlan(features, full)
	if err != nil {
		return dst, err
	}

	var keysArr [4][]byte
	keys := keysArr[:0]
	for _, jk := range p.joinKeys {
		var raw string
		entities.ForEach(func(k, val gjson.Result) bool {
			if k.Str == jk {
				raw = val.Raw
				return false
			}
			return true
		})
		if raw == "" {
			return dst, badRequestf("entities: missing join key %q", jk)
		}
		keys = append(keys, jsonutil.S2B(raw))
	}
	var orderArr [4]int
	order := orderArr[:0]
	entities.ForEach(func(k, _ gjson.Result) bool {
		if i := slices.Index(p.joinKeys, k.Str); i >= 0 && !slices.Contains(order, i) {
			order = append(order, i)
		}
		return true
	})
	out, _, _, err := p.fetch(ctx, s, keys, order, dst, nil, nil, false)
	return out, err
}

// cachedPlan returns the plan for a features array, building it on first use.
func (v *Views) cachedPlan(features gjson.Result, full bool) (*Plan, error) {
	var keyBuf [256]byte
	key := append(keyBuf[:0], features.Raw...)
	if full {
		key = append(key, "\x00full"...)
	}
	v.plansMu.RLock()
	p := v.plans[string(key)]
	v.plansMu.RUnlock()
	if p != nil {
		return p, nil
	}

	var refs []string
	var bad bool
	features.ForEach(func(_, f gjson.Result) bool {
		if f.Type != gjson.String {
			bad = true
			return false
		}
		refs = append(refs, f.Str)
		return true
	})
	if bad {
		return nil, badRequestf(`"features" must be a list of "view:feature" strings`)
	}
	p, err := v.NewPlan(v.Project, refs, PlanOptions{Shape: ShapeColumns, FullNames: full})
	if err != nil {
		return nil, &BadRequestError{Message: err.Error()}
	}
	v.plansMu.Lock()
	if v.plans == nil {
		v.plans = make(map[string]*Plan)
	}
	if len(v.plans) >= maxCachedPlans {
		// Drop an arbitrary entry; feature lists are normally few and fixed.
		for k := range v.plans {
			delete(v.plans, k)
			break
		}
	}
	v.plans[string(key)] = p
	v.plansMu.Unlock()
	return p, nil
}
