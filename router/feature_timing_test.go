package router

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/rueidis"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/internal/redistest"
	"github.com/lariat-gw/lariat/tasks"
)

// BenchmarkFeatureRoute runs a route whose feature task reads 1 entity × 50
// features or 100 entities × 10 features from a real redis-server, through
// the whole request path (entity template, pipelined read, decode, response
// assembly), next to a raw rueidis pipelined HMGET of the same keys.
func BenchmarkFeatureRoute(b *testing.B) {
	srv := redistest.Start(b)
	var sb strings.Builder
	sb.WriteString("project: bench\nentities: [{name: driver_id, value_type: INT64}]\nfeature_views:\n")
	for _, n := range []int{50, 10} {
		fmt.Fprintf(&sb, "  - name: v%d\n    entities: [driver_id]\n    features:\n", n)
		for i := 0; i < n; i++ {
			fmt.Fprintf(&sb, "      - {name: f%d, dtype: DOUBLE}\n", i)
		}
	}
	views, err := featurefetch.ParseViews("bench.yaml", []byte(sb.String()))
	if err != nil {
		b.Fatal(err)
	}
	store, err := featurefetch.NewRedisStore(featurefetch.RedisOptions{Addrs: []string{srv.Addr()}})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	var seed strings.Builder
	for id := 1; id <= 100; id++ {
		for _, n := range []int{50, 10} {
			var feats []string
			for i := 0; i < n; i++ {
				feats = append(feats, fmt.Sprintf(`"f%d":%d.25`, i, id+i))
			}
			fmt.Fprintf(&seed, `{"view":"v%d","entities":{"driver_id":%d},"features":{%s}}`+"\n", n, id, strings.Join(feats, ","))
		}
	}
	if _, err := views.Seed(context.Background(), store, "", []byte(seed.String())); err != nil {
		b.Fatal(err)
	}
	env := tasks.NewEnv(nil)
	tasks.FeatureStore.Provide(env, &tasks.FeatureEnv{Views: views, Store: store})

	for _, bc := range []struct {
		name     string
		view     string
		entities int
		features int
	}{{"1x50", "v50", 1, 50}, {"100x10", "v10", 100, 10}} {
		var feats, ids []string
		for i := 0; i < bc.features; i++ {
			feats = append(feats, fmt.Sprintf("%s:f%d", bc.view, i))
		}
		for id := 1; id <= bc.entities; id++ {
			ids = append(ids, strconv.Itoa(id))
		}
		route := fmt.Sprintf("name: f\nendpoint: /f\ntimeout: 2s\ntasks:\n  features:\n    type: feature\n    inputs:\n      entities: {driver_id: '{{ .request.ids }}'}\n      features: [%s]\n    output: {path: response.body}\n", strings.Join(feats, ", "))
		r, err := config.Parse("bench.yaml", []byte(route))
		if err != nil {
			b.Fatal(err)
		}
		p, err := Compile(r, env)
		if err != nil {
			b.Fatal(err)
		}
		body := []byte(`{"ids":[` + strings.Join(ids, ",") + `]}`)
		b.Run(bc.name+"/route", func(b *testing.B) {
			b.ReportAllocs()
			var rc fasthttp.RequestCtx
			for i := 0; i < b.N; i++ {
				rc.Request.SetBody(body)
				rc.Response.Reset()
				p.Serve(&rc)
				if rc.Response.StatusCode() != 200 {
					b.Fatalf("answer %d %s", rc.Response.StatusCode(), rc.Response.Body())
				}
			}
		})
		// The raw floor: the same HMGETs, pipelined, values left undecoded.
		client := store.Client()
		fields := make([]string, 0, bc.features+1)
		for i := 0; i < bc.features; i++ {
			fields = append(fields, string(featurefetch.AppendFieldHash(nil, bc.view, fmt.Sprintf("f%d", i))))
		}
		fields = append(fields, featurefetch.TimestampField(bc.view))
		keys := make([]string, bc.entities)
		for i := range keys {
			ev, err := featurefetch.ParseEntityValue(featurefetch.TypeInt64, []byte(ids[i]))
			if err != nil {
				b.Fatal(err)
			}
			key, err := featurefetch.AppendEntityKey(nil, "bench", []string{"driver_id"}, []featurefetch.EntityValue{ev})
			if err != nil {
				b.Fatal(err)
			}
			keys[i] = string(key)
		}
		b.Run(bc.name+"/raw", func(b *testing.B) {
			b.ReportAllocs()
			cmds := make(rueidis.Commands, len(keys))
			ctx := context.Background()
			for i := 0; i < b.N; i++ {
				for k, key := range keys {
					cmds[k] = client.B().Hmget().Key(key).Field(fields...).Build()
				}
				for _, res := range client.DoMulti(ctx, cmds...) {
					if _, err := res.ToArray(); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
