package ingest

import (
	"bufio"
	"context"

	"os"
	"path/filepath"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/internal/redistest"
)

// benchRowsEnv sets the row count of BenchmarkLoadCSV; the default keeps
// `go test -bench` quick. The figures quoted for the loader use 1000000:
//
//	LARIAT_INGEST_BENCH_ROWS=1000000 go test -run '^$' -bench LoadCSV -benchtime 1x ./ingest/
const benchRowsEnv = "LARIAT_INGEST_BENCH_ROWS"

const benchViewsYAML = `project: bench
entities: [{name: driver_id, value_type: INT64}]
feature_views:
  - name: stats
    entities: [driver_id]
    features:
      - {name: f0, dtype: FLOAT}
      - {name: f1, dtype: FLOAT}
      - {name: f2, dtype: FLOAT}
      - {name: f3, dtype: DOUBLE}
      - {name: f4, dtype: DOUBLE}
      - {name: f5, dtype: INT64}
      - {name: f6, dtype: INT64}
      - {name: f7, dtype: STRING}
      - {name: f8, dtype: STRING}
      - {name: f9, dtype: BOOL}
`

// benchRow returns the cells of row i: driver_id, event_timestamp, f0..f9.
func benchRow(i int, cells []string) []string {
	ts := time.Unix(1767225600+int64(i%86400), 0).UTC()
	return append(cells[:0],
		strconv.Itoa(i+1),
		ts.Format(time.RFC3339),
		strconv.FormatFloat(float64(i%1000)/1000, 'f', -1, 32),
		strconv.FormatFloat(float64(i%997)/997, 'f', -1, 32),
		strconv.FormatFloat(float64(i%7)/8, 'f', -1, 32),
		strconv.FormatFloat(float64(i)*1.25, 'f', -1, 64),
		strconv.FormatFloat(float64(i%100)+0.5, 'f', -1, 64),
		strconv.Itoa(i*3),
		strconv.Itoa(i%50),
		[]string{"sedan", "bike", "van", "scooter"}[i%4],
		"zone-"+strconv.Itoa(i%300),
		strconv.FormatBool(i%3 == 0),
	)
}

func writeBenchCSV(b *testing.B, path string, n int) {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("driver_id,event_timestamp,f0,f1,f2,f3,f4,f5,f6,f7,f8,f9\n")
	var cells []string
	for i := 0; i < n; i++ {
		cells = benchRow(i, cells)
		w.WriteString(strings.Join(cells, ","))
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// rawHSETLoad writes the same rows with plain pipelined HSETs (no
// newest-wins check), the upper bound the loader is compared with: one
// goroutine encodes batches, another writes them with DoMulti, one batch in
// flight, like the loader.
func rawHSETLoad(b *testing.B, c rueidis.Client, s *Schema, n, batchSize int) {
	b.Helper()
	type rawBatch struct{ cmds rueidis.Commands }
	ch := make(chan rawBatch, 2)
	go func() {
		defer close(ch)
		bt := newBatch(s, batchSize)
		var cells []string
		for i := 0; i < n; {
			bt.reset()
			for ; bt.len() < batchSize && i < n; i++ {
				cells = benchRow(i, cells)
				if err := textRow(bt, Pos{}, func(slot int) string { return cells[slot] }); err != nil {
					panic(err)
				}
			}
			str := string(bt.buf)
			cmds := make(rueidis.Commands, 0, bt.len())
			nf := s.nFeatures()
			for _, r := range bt.rows {
				cmd := c.B().Hset().Key(str[r.key.start:r.key.end]).FieldValue().FieldValue(s.header[0], str[r.ts.start:r.ts.end])
				start := r.ts.end
				for fi, end := range bt.ends[r.vals : int(r.vals)+nf] {
					cmd = cmd.FieldValue(s.header[3+fi], str[start:end])
					start = end
				}
				cmds = append(cmds, cmd.Build())
			}
			ch <- rawBatch{cmds}
		}
	}()
	for rb := range ch {
		for _, r := range c.DoMulti(context.Background(), rb.cmds...) {
			if err := r.Error(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkLoadCSV(b *testing.B) {
	n := 100_000
	if s := os.Getenv(benchRowsEnv); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n <= 0 {
			b.Fatalf("%s=%q: want a positive row count", benchRowsEnv, s)
		}
	}
	srv := redistest.Start(b, "--enable-debug-command", "yes")
	r := connectRedis(b, srv)
	v, err := featurefetch.ParseViews("bench.yaml", []byte(benchViewsYAML))
	if err != nil {
		b.Fatal(err)
	}
	s := testSchema(b, v, "stats")
	path := filepath.Join(b.TempDir(), "bench.csv")
	writeBenchCSV(b, path, n)
	ctx := context.Background()
	// FLUSHALL and DEBUG DIGEST of a million hashes take seconds: a client
	// with a long timeout.
	admin, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true,
		ForceSingleClient: true, ConnWriteTimeout: 5 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close()
	do := func(cmd rueidis.Completed) rueidis.RedisResult {
		res := admin.Do(ctx, cmd)
		if err := res.Error(); err != nil {
			b.Fatal(err)
		}
		return res
	}
	digest := func() string {
		d, err := do(admin.B().Arbitrary("DEBUG", "DIGEST").Build()).ToString()
		if err != nil {
			b.Fatal(err)
		}
		return d
	}

	// Redis CPU seconds of the main thread: the resource both runs are
	// bound by, and a figure less disturbed by other load on the machine
	// than wall time.
	redisCPU := func() float64 {
		info, err := do(admin.B().Info().Section("cpu").Build()).ToString()
		if err != nil {
			b.Fatal(err)
		}
		var sum float64
		for _, line := range strings.Split(info, "\r\n") {
			for _, name := range []string{"used_cpu_user_main_thread:", "used_cpu_sys_main_thread:"} {
				if v, ok := strings.CutPrefix(line, name); ok {
					f, _ := strconv.ParseFloat(v, 64)
					sum += f
				}
			}
		}
		return sum
	}

	// The same loader with a script that writes every row unchecked:
	// what passing the rows through a script costs, the floor of any
	// script that checks before it writes.
	hsetOnly, err := os.ReadFile("testdata/hset_only.lua")
	if err != nil {
		b.Fatal(err)
	}
	unchecked, err := newScriptWriter(ctx, r.c, WriterOptions{}, string(hsetOnly))
	if err != nil {
		b.Fatal(err)
	}

	var rawTime, loadTime time.Duration
	var rawCPU, loadCPU, uncheckedCPU float64
	var peakHeap uint64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		do(admin.B().Flushall().Build())
		cpu0 := redisCPU()
		start := time.Now()
		rawHSETLoad(b, r.c, s, n, DefaultBatchSize)
		rawTime += time.Since(start)
		rawCPU += redisCPU() - cpu0
		rawDigest := digest()
		do(admin.B().Flushall().Build())
		cpu0 = redisCPU()
		if _, err := Load(ctx, unchecked, s, path, LoadOptions{}); err != nil {
			b.Fatal(err)
		}
		uncheckedCPU += redisCPU() - cpu0
		if d := digest(); d != rawDigest {
			b.Fatalf("unchecked script and raw HSET loop stored different data: digest %s vs %s", d, rawDigest)
		}
		do(admin.B().Flushall().Build())
		stopSampling := sampleHeap(&peakHeap)
		cpu0 = redisCPU()
		b.StartTimer()

		start = time.Now()
		st, err := Load(ctx, r.w, s, path, LoadOptions{})
		loadTime += time.Since(start)

		b.StopTimer()
		loadCPU += redisCPU() - cpu0
		stopSampling()
		if err != nil {
			b.Fatal(err)
		}
		if st.Written != int64(n) {
			b.Fatalf("written %d of %d rows", st.Written, n)
		}
		if d := digest(); d != rawDigest {
			b.Fatalf("loader and raw HSET loop stored different data: digest %s vs %s", d, rawDigest)
		}
		b.StartTimer()
	}
	b.StopTimer()
	loadRate := float64(n) * float64(b.N) / loadTime.Seconds()
	rawRate := float64(n) * float64(b.N) / rawTime.Seconds()
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	b.ReportMetric(float64(n), "rows")
	b.ReportMetric(loadRate, "rows/s")
	b.ReportMetric(rawRate, "raw-hset-rows/s")
	b.ReportMetric(loadRate/rawRate, "ratio")
	rows := float64(n) * float64(b.N)
	b.ReportMetric(loadCPU/rows*1e6, "redis-µs/row")
	b.ReportMetric(rawCPU/rows*1e6, "raw-redis-µs/row")
	b.ReportMetric(rawCPU/loadCPU, "redis-cpu-ratio")
	b.ReportMetric(uncheckedCPU/rows*1e6, "unchecked-redis-µs/row")
	b.ReportMetric(rawCPU/uncheckedCPU, "unchecked-redis-cpu-ratio")
	b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(ru.Maxrss)/1024, "maxrss-MiB")
}

// sampleHeap records the peak of live heap bytes every few milliseconds
// until the returned function is called.
func sampleHeap(peak *uint64) (stop func()) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var done atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !done.Load() {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > *peak {
				*peak = v
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return func() {
		done.Store(true)
		wg.Wait()
	}
}

// BenchmarkEncodeCSVRow measures reading and encoding one CSV row, without Redis.
func BenchmarkEncodeCSVRow(b *testing.B) {
	v, err := featurefetch.ParseViews("bench.yaml", []byte(benchViewsYAML))
	if err != nil {
		b.Fatal(err)
	}
	s := testSchema(b, v, "stats")
	var sb strings.Builder
	sb.WriteString("driver_id,event_timestamp,f0,f1,f2,f3,f4,f5,f6,f7,f8,f9\n")
	var cells []string
	const rows = 4096
	for i := 0; i < rows; i++ {
		cells = benchRow(i, cells)
		sb.WriteString(strings.Join(cells, ","))
		sb.WriteByte('\n')
	}
	data := sb.String()
	bt := newBatch(s, rows)
	b.ReportAllocs()
	b.SetBytes(int64(len(data) / rows))
	b.ResetTimer()
	for i := 0; i < b.N; {
		src, err := newCSVSource("bench.csv", strings.NewReader(data), s)
		if err != nil {
			b.Fatal(err)
		}
		bt.reset()
		for ; i < b.N; i++ {
			if err := src.next(bt); err != nil {
				break
			}
		}
	}
}

// BenchmarkPushRequest measures one POST /push of 10 rows through the
// handler, Redis included.
func BenchmarkPushRequest(b *testing.B) {
	r := startRedis(b)
	srv, err := NewServer(r.w, testViews(b), ServerOptions{Logf: b.Logf})
	if err != nil {
		b.Fatal(err)
	}
	var sb strings.Builder
	sb.WriteString(`{"push_source_name":"driver_stats","df":{"driver_id":[1,2,3,4,5,6,7,8,9,10],` +
		`"event_timestamp":[`)
	for i := 0; i < 10; i++ {
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString(`"2026-05-01T10:00:00Z"`)
	}
	sb.WriteString(`],"conv_rate":[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1],"acc_rate":[1,1,1,1,1,1,1,1,1,1],` +
		`"avg_daily_trips":[1,2,3,4,5,6,7,8,9,10],"rating":[4.5,4.5,4.5,4.5,4.5,4.5,4.5,4.5,4.5,4.5],` +
		`"vehicle_type":["a","b","c","d","e","f","g","h","i","j"],"is_active":[true,true,true,true,true,false,false,false,false,false]}}`)
	body := []byte(sb.String())
	var rc fasthttp.RequestCtx
	b.ReportAllocs()
	for b.Loop() {
		rc.Request.Reset()
		rc.Response.Reset()
		rc.Request.Header.SetMethod("POST")
		rc.Request.SetRequestURI("/push")
		rc.Request.SetBody(body)
		srv.Handler(&rc)
		if rc.Response.StatusCode() != 200 {
			b.Fatalf("push: %d %s", rc.Response.StatusCode(), rc.Response.Body())
		}
	}
}
