package featurefetch

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"testing"
)

func FuzzAppendValueJSON(f *testing.F) {
	for _, c := range valueCases {
		f.Add(pbValue(f, c.typ, c.goVal))
	}
	for _, h := range []string{"", "20", "12056162", "a20100", "6a03080108", "7202ff01", "9801", "0a80808080808080808001"} {
		b, _ := hex.DecodeString(h)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		prefix := []byte("p")
		out, isNull, err := AppendValueJSON(prefix, data)
		if err != nil {
			if !bytes.Equal(out, prefix) {
				t.Fatalf("dst changed on error: %q", out)
			}
			return
		}
		js := out[len(prefix):]
		if !json.Valid(js) {
			t.Fatalf("invalid JSON %q for %x", js, data)
		}
		if isNull != bytes.Equal(js, []byte("null")) && isNull {
			t.Fatalf("isNull with %q", js)
		}
	})
}

func FuzzAppendValue(f *testing.F) {
	for _, c := range valueCases {
		f.Add(uint8(c.typ), c.in)
	}
	f.Add(uint8(TypeStringList), `["\ud800"]`)
	f.Add(uint8(TypeInt64), `1e5`)
	f.Fuzz(func(t *testing.T, typ uint8, in string) {
		enc, err := AppendValue(nil, ValueType(typ), []byte(in))
		if err != nil {
			return
		}
		js, _, err := AppendValueJSON(nil, enc)
		if err != nil {
			t.Fatalf("AppendValue(%d, %q) = %x, which does not decode: %v", typ, in, enc, err)
		}
		if !json.Valid(js) {
			t.Fatalf("invalid JSON %q", js)
		}
		// Decoding and encoding again is stable.
		enc2, err := AppendValue(nil, ValueType(typ), js)
		if err != nil {
			t.Fatalf("re-encoding %s as %s: %v", js, ValueType(typ), err)
		}
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip of %q (%s): %x, then %s, then %x", in, ValueType(typ), enc, js, enc2)
		}
	})
}

func FuzzParseViews(f *testing.F) {
	for _, path := range []string{"testdata/featureviews.yaml", "demo/featureviews.yaml"} {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("project: p\nentities: [{name: d, value_type: INT64}]\nfeature_views: [{name: v, entities: [d], features: [{name: a, dtype: FLOAT}]}]\n"))
	f.Add([]byte("project: &a p\nentities: *a\n"))
	f.Add([]byte("project: p\nfeature_views:\n  - {name: v, ttl: 99999999999999999999, features: [{name: a, dtype: INT64}]}\n"))
	f.Add([]byte("- [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := ParseViews("fuzz.yaml", data)
		if err != nil {
			return
		}
		var feats []string
		for _, fv := range v.FeatureViews {
			for _, ft := range fv.Features {
				feats = append(feats, fv.Name+":"+ft.Name)
			}
			for _, jk := range fv.JoinKeys {
				if _, ok := v.Entity(jk); !ok {
					t.Fatalf("view %q references unknown entity %q", fv.Name, jk)
				}
			}
		}
		if len(feats) > 0 {
			// Building a plan over every feature must not panic.
			_, _ = v.NewPlan("", feats, PlanOptions{FullNames: true, Shape: ShapeColumns})
		}
	})
}

// FuzzAppendJSONFloat: a DOUBLE or FLOAT of any bits prints as
// encoding/json prints it (NaN and the infinities, which encoding/json
// refuses, print as null).
func FuzzAppendJSONFloat(f *testing.F) {
	for _, v := range []float64{0, 1, -1, 0.1, 0.3, 123.456, 9e9, 1 << 53, 1e-6, 1e21, 2.5e-7} {
		f.Add(math.Float64bits(v))
	}
	f.Fuzz(func(t *testing.T, bits uint64) {
		f64 := math.Float64frombits(bits)
		f32 := math.Float32frombits(uint32(bits))
		if want, err := json.Marshal(f64); err == nil {
			if got := appendJSONFloat(nil, f64, 64); !bytes.Equal(got, want) {
				t.Fatalf("float64 %b: got %s, want %s", f64, got, want)
			}
		}
		if want, err := json.Marshal(f32); err == nil {
			if got := appendJSONFloat(nil, float64(f32), 32); !bytes.Equal(got, want) {
				t.Fatalf("float32 %b: got %s, want %s", f32, got, want)
			}
		}
	})
}
