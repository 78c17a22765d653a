package ingest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/internal/redistest"
)

// testRedis is a real redis-server with a client and a Writer.
type testRedis struct {
	srv *redistest.Server
	c   rueidis.Client
	w   *Writer
}

func startRedis(t testing.TB) *testRedis {
	t.Helper()
	srv := redistest.Start(t)
	return connectRedis(t, srv)
}

func connectRedis(t testing.TB, srv *redistest.Server) *testRedis {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	w, err := NewWriter(context.Background(), c, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &testRedis{srv: srv, c: c, w: w}
}

func testViews(t testing.TB) *featurefetch.Views {
	t.Helper()
	v, err := featurefetch.LoadViews("testdata/featureviews.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func testSchema(t testing.TB, v *featurefetch.Views, view string) *Schema {
	t.Helper()
	s, err := NewSchema(v, view, SchemaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// writeFile writes data to name in a new temporary folder and returns the path.
func writeFile(t testing.TB, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fetchRows reads features of view for the given entity keys (a JSON array
// per join key) through featurefetch's plan, as the gateway does, and
// returns the row-shaped JSON.
func fetchRows(t testing.TB, v *featurefetch.Views, c rueidis.Client, view string, keys ...string) string {
	t.Helper()
	fv, ok := v.View(view)
	if !ok {
		t.Fatalf("no view %q", view)
	}
	var refs []string
	for _, f := range fv.Features {
		refs = append(refs, view+":"+f.Name)
	}
	p, err := v.NewPlan("", refs, featurefetch.PlanOptions{Shape: featurefetch.ShapeRows})
	if err != nil {
		t.Fatal(err)
	}
	var raw [][]byte
	for _, k := range keys {
		raw = append(raw, []byte(k))
	}
	store := featurefetch.NewRedisStoreFromClient(c, 5*time.Second, false)
	out, err := p.Fetch(context.Background(), store, raw, nil)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	return string(out)
}

// dump returns every key of the server with its hash fields, and the set of
// keys with an expiry.
func dump(t testing.TB, c rueidis.Client) map[string]map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]map[string]string{}
	var cursor uint64
	for i := 0; i < 1_000_000; i++ {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Count(1000).Build()).AsScanEntry()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range e.Elements {
			h, err := c.Do(ctx, c.B().Hgetall().Key(k).Build()).AsStrMap()
			if err != nil {
				t.Fatalf("HGETALL %q: %v", k, err)
			}
			out[k] = h
		}
		if cursor = e.Cursor; cursor == 0 {
			return out
		}
	}
	t.Fatal("SCAN did not finish")
	return nil
}

// diffDumps describes the differences between two dumps, "" if none.
func diffDumps(a, b map[string]map[string]string) string {
	var diffs []string
	for k, ha := range a {
		hb, ok := b[k]
		if !ok {
			diffs = append(diffs, "key only in first: "+quoteCell(k))
			continue
		}
		for f, va := range ha {
			if vb, ok := hb[f]; !ok || va != vb {
				diffs = append(diffs, "key "+quoteCell(k)+" field "+quoteCell(f)+" differs")
			}
		}
		for f := range hb {
			if _, ok := ha[f]; !ok {
				diffs = append(diffs, "key "+quoteCell(k)+" field "+quoteCell(f)+" only in second")
			}
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			diffs = append(diffs, "key only in second: "+quoteCell(k))
		}
	}
	slices.Sort(diffs)
	if len(diffs) > 10 {
		diffs = append(diffs[:10], "...")
	}
	return strings.Join(diffs, "\n")
}

// load runs Load with test defaults.
func load(t testing.TB, r *testRedis, s *Schema, path string, opt LoadOptions) (*Stats, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return Load(ctx, r.w, s, path, opt)
}

func mustLoad(t testing.TB, r *testRedis, s *Schema, path string) *Stats {
	t.Helper()
	st, err := load(t, r, s, path, LoadOptions{})
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	return st
}

func checkCounts(t testing.TB, st *Stats, read, written, skipped, rejected int64) {
	t.Helper()
	if st.Read != read || st.Written != written || st.Skipped != skipped || st.Rejected != rejected {
		t.Fatalf("counts: read %d written %d skipped %d rejected %d; want %d %d %d %d (errors: %v)",
			st.Read, st.Written, st.Skipped, st.Rejected, read, written, skipped, rejected, st.Errors)
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func itoa(n int) string {
	return strconv.Itoa(n)
}
