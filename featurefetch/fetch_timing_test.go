package featurefetch

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/lariat-gw/lariat/internal/redistest"
)

// benchViews has a 50-feature and a 10-feature view on driver_id.
func benchViews(b *testing.B) *Views {
	b.Helper()
	var sb strings.Builder
	sb.WriteString("project: bench\nentities: [{name: driver_id, value_type: INT64}]\nfeature_views:\n")
	for _, n := range []int{50, 10} {
		fmt.Fprintf(&sb, "  - name: v%d\n    entities: [driver_id]\n    ttl: 24h\n    features:\n", n)
		types := []string{"FLOAT", "INT64", "DOUBLE", "STRING", "FLOAT_LIST"}
		for i := 0; i < n; i++ {
			fmt.Fprintf(&sb, "      - {name: f%d, dtype: %s}\n", i, types[i%len(types)])
		}
	}
	v, err := ParseViews("bench.yaml", []byte(sb.String()))
	if err != nil {
		b.Fatal(err)
	}
	return v
}

type benchCase struct {
	name     string
	view     string
	entities int
	features int
}

var benchCases = []benchCase{
	{"1x50", "v50", 1, 50},
	{"100x10", "v10", 100, 10},
}

// benchSeed writes rows for entities 1..100 of both views to w.
func benchSeed(b *testing.B, v *Views, w RowWriter) {
	b.Helper()
	var seed strings.Builder
	for id := 1; id <= 100; id++ {
		for _, bc := range benchCases {
			fv, _ := v.View(bc.view)
			var feats []string
			for i, f := range fv.Features {
				var val string
				switch f.Type {
				case TypeFloat, TypeDouble:
					val = strconv.FormatFloat(float64(id)+float64(i)/100, 'f', -1, 64)
				case TypeInt64:
					val = strconv.Itoa(id * i)
				case TypeString:
					val = strconv.Quote("value-" + strconv.Itoa(i))
				case TypeFloatList:
					val = "[0.5,1.5,2.5,3.5]"
				}
				feats = append(feats, strconv.Quote(f.Name)+":"+val)
			}
			fmt.Fprintf(&seed, `{"view":%q,"entities":{"driver_id":%d},"features":{%s}}`+"\n", bc.view, id, strings.Join(feats, ","))
		}
	}
	if _, err := v.Seed(context.Background(), w, "", []byte(seed.String())); err != nil {
		b.Fatal(err)
	}
}

func benchKeys(n int) [][]byte {
	if n == 1 {
		return [][]byte{[]byte("42")}
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = strconv.Itoa(i + 1)
	}
	return [][]byte{[]byte("[" + strings.Join(ids, ",") + "]")}
}

func benchFeatures(v *Views, view string) []string {
	fv, _ := v.View(view)
	var out []string
	for _, f := range fv.Features {
		out = append(out, view+":"+f.Name)
	}
	return out
}

// rawReads returns the HMGETs a plan sends, computed with the layout functions,
// for the raw rueidis baseline.
func rawReads(v *Views, bc benchCase) (keys []string, fields []string) {
	fv, _ := v.View(bc.view)
	for _, f := range fv.Features {
		fields = append(fields, FieldHash(fv.Name, f.Name))
	}
	fields = append(fields, TimestampField(fv.Name))
	for i := 0; i < bc.entities; i++ {
		id := int64(i + 1)
		if bc.entities == 1 {
			id = 42
		}
		k, _ := AppendEntityKey(nil, v.Project, []string{"driver_id"}, []EntityValue{{Type: TypeInt64, Int: id}})
		keys = append(keys, string(k))
	}
	return keys, fields
}

func rawHMGET(ctx context.Context, c rueidis.Client, keys, fields []string, cacheTTL time.Duration) (int, error) {
	var resps []rueidis.RedisResult
	if cacheTTL > 0 {
		cc := make([]rueidis.CacheableTTL, 0, len(keys))
		for _, k := range keys {
			cc = append(cc, rueidis.CT(c.B().Hmget().Key(k).Field(fields...).Cache(), cacheTTL))
		}
		resps = c.DoMultiCache(ctx, cc...)
	} else {
		cmds := make(rueidis.Commands, 0, len(keys))
		for _, k := range keys {
			cmds = append(cmds, c.B().Hmget().Key(k).Field(fields...).Build())
		}
		resps = c.DoMulti(ctx, cmds...)
	}
	found := 0
	for _, r := range resps {
		arr, err := r.ToArray()
		if err != nil {
			return 0, err
		}
		for i := range arr {
			if !arr[i].IsNil() {
				found++
			}
		}
	}
	return found, nil
}

// BenchmarkFetchRedis compares Plan.Fetch with a raw pipelined rueidis HMGET of
// the same keys and fields ("raw" builds commands, pipelines them and walks the
// replies; "plan" also builds keys, decodes every Value and writes JSON).
func BenchmarkFetchRedis(b *testing.B) {
	v := benchViews(b)
	srv := redistest.Start(b)
	s, err := NewRedisStore(RedisOptions{Addrs: []string{srv.Addr()}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	benchSeed(b, v, s)
	// Requests carry a deadline, as the gateway's do.
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()

	for _, cache := range []time.Duration{0, time.Minute} {
		for _, bc := range benchCases {
			name := bc.name
			if cache > 0 {
				name = "cached/" + name
			}
			p, err := v.NewPlan("", benchFeatures(v, bc.view), PlanOptions{CacheTTL: cache})
			if err != nil {
				b.Fatal(err)
			}
			keys := benchKeys(bc.entities)
			rk, rf := rawReads(v, bc)

			// Baseline and plan must read the same data.
			out, err := p.Fetch(ctx, s, keys, nil)
			if err != nil {
				b.Fatal(err)
			}
			found, err := rawHMGET(ctx, s.Client(), rk, rf, cache)
			if err != nil {
				b.Fatal(err)
			}
			if want := bc.entities * (bc.features + 1); found != want {
				b.Fatalf("raw read found %d fields, want %d", found, want)
			}
			if strings.Contains(string(out), "null") || strings.Count(string(out), `"driver_id"`) != bc.entities {
				b.Fatalf("plan output incomplete: %.300s", out)
			}

			b.Run(name+"/plan", func(b *testing.B) {
				b.ReportAllocs()
				var dst []byte
				for b.Loop() {
					if dst, err = p.Fetch(ctx, s, keys, dst[:0]); err != nil {
						b.Fatal(err)
					}
				}
				b.SetBytes(int64(len(dst)))
			})
			b.Run(name+"/raw", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := rawHMGET(ctx, s.Client(), rk, rf, cache); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkFetchRedisParallel measures throughput with concurrent callers
// sharing one client (auto-pipelining).
func BenchmarkFetchRedisParallel(b *testing.B) {
	v := benchViews(b)
	srv := redistest.Start(b)
	s, err := NewRedisStore(RedisOptions{Addrs: []string{srv.Addr()}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	benchSeed(b, v, s)
	bc := benchCases[0]
	p, err := v.NewPlan("", benchFeatures(v, bc.view), PlanOptions{})
	if err != nil {
		b.Fatal(err)
	}
	keys := benchKeys(bc.entities)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var dst []byte
		var err error
		for pb.Next() {
			if dst, err = p.Fetch(context.Background(), s, keys, dst[:0]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkFetchMemory measures the plan's own cost (keys, decoding, JSON)
// without network.
func BenchmarkFetchMemory(b *testing.B) {
	v := benchViews(b)
	s := NewMemoryStore()
	benchSeed(b, v, s)
	for _, shape := range []Shape{ShapeRows, ShapeColumns} {
		for _, bc := range benchCases {
			p, err := v.NewPlan("", benchFeatures(v, bc.view), PlanOptions{Shape: shape})
			if err != nil {
				b.Fatal(err)
			}
			keys := benchKeys(bc.entities)
			name := bc.name + "/rows"
			if shape == ShapeColumns {
				name = bc.name + "/columns"
			}
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				var dst []byte
				for b.Loop() {
					if dst, err = p.Fetch(context.Background(), s, keys, dst[:0]); err != nil {
						b.Fatal(err)
					}
				}
				b.SetBytes(int64(len(dst)))
			})
		}
	}
}

// BenchmarkAppendOnlineFeatures measures the Feast-compatible entry point
// (request parsing and plan-cache lookup on top of Fetch) on the memory store.
func BenchmarkAppendOnlineFeatures(b *testing.B) {
	v := benchViews(b)
	s := NewMemoryStore()
	benchSeed(b, v, s)
	req := []byte(`{"features":["v10:f0","v10:f1","v10:f2","v10:f3","v10:f4"],"entities":{"driver_id":[1,2,3,4,5,6,7,8,9,10]}}`)
	b.ReportAllocs()
	var dst []byte
	var err error
	for b.Loop() {
		if dst, err = v.AppendOnlineFeatures(context.Background(), s, req, dst[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendJSONFloat: feature values with short decimal forms take
// the short-decimal path; values with random bits pay for trying it
// before strconv's shortest formatting, which "strconv" measures alone.
func BenchmarkAppendJSONFloat(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 5))
	decimals := make([]float64, 1024)
	random := make([]float64, 1024)
	for i := range decimals {
		decimals[i] = float64(rng.IntN(1_000_000)) / 1000
		random[i] = rng.Float64() * 1000
	}
	dst := make([]byte, 0, 64)
	for _, bc := range []struct {
		name   string
		values []float64
		format func([]byte, float64) []byte
	}{
		{"decimals", decimals, func(d []byte, f float64) []byte { return appendJSONFloat(d, f, 64) }},
		{"decimals/strconv", decimals, func(d []byte, f float64) []byte { return strconv.AppendFloat(d, f, 'f', -1, 64) }},
		{"random", random, func(d []byte, f float64) []byte { return appendJSONFloat(d, f, 64) }},
		{"random/strconv", random, func(d []byte, f float64) []byte { return strconv.AppendFloat(d, f, 'f', -1, 64) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				dst = bc.format(dst[:0], bc.values[i&1023])
				i++
			}
		})
	}
}
