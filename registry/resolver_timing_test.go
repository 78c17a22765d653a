package registry

import (
	"fmt"
	"testing"
	"time"
)

func newBenchResolver(b *testing.B, refs int) (*Resolver, []string) {
	b.Helper()
	r := NewResolver(NewClient("http://127.0.0.1:1", nil), ResolverOptions{Interval: time.Hour})
	b.Cleanup(r.Stop)
	names := make([]string, refs)
	m := make(map[string]Resolved, refs)
	for i := range names {
		names[i] = fmt.Sprintf("model-%d@champion", i)
		m[names[i]] = Resolved{Name: fmt.Sprintf("model-%d", i), Version: "3", ServingEndpoint: "http://127.0.0.1:9000"}
		r.refs[names[i]] = modelRef{}
	}
	r.snap.Store(&m)
	return r, names
}

func BenchmarkResolverLookup(b *testing.B) {
	r, names := newBenchResolver(b, 64)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := r.Lookup(names[i&63]); !ok {
				b.Fatal("miss")
			}
			i++
		}
	})
}

func BenchmarkResolverLookupBytes(b *testing.B) {
	r, names := newBenchResolver(b, 64)
	keys := make([][]byte, len(names))
	for i, n := range names {
		keys[i] = []byte(n)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := r.LookupBytes(keys[i&63]); !ok {
			b.Fatal("miss")
		}
	}
}

func TestResolverLookupDoesNotAllocate(t *testing.T) {
	r := NewResolver(NewClient("http://127.0.0.1:1", nil), ResolverOptions{Interval: time.Hour})
	defer r.Stop()
	m := map[string]Resolved{"eta@champion": {Name: "eta", Version: "1"}}
	r.snap.Store(&m)
	key := []byte("eta@champion")
	allocs := testing.AllocsPerRun(100, func() {
		if _, ok := r.Lookup("eta@champion"); !ok {
			t.Fatal("miss")
		}
		if _, ok := r.LookupBytes(key); !ok {
			t.Fatal("miss")
		}
	})
	if allocs != 0 {
		t.Fatalf("Lookup allocates %.1f times per call", allocs)
	}
}
