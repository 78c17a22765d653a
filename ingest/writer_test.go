package ingest

import (
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/internal/testwait"
)

// textBatch encodes rows given as cells in schema column order.
func textBatch(t testing.TB, s *Schema, rows ...[]string) *batch {
	t.Helper()
	b := newBatch(s, len(rows))
	for i, cells := range rows {
		if len(cells) != len(s.columns) {
			t.Fatalf("row %d has %d cells, want %d", i, len(cells), len(s.columns))
		}
		if err := textRow(b, Pos{File: "test", Line: int64(i + 1)}, func(slot int) string { return cells[slot] }); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func writeBatch(t testing.TB, w *Writer, b *batch) []int8 {
	t.Helper()
	if err := w.write(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	return append([]int8(nil), b.outcome...)
}

func outcomes(o []int8) string {
	var sb strings.Builder
	for _, x := range o {
		sb.WriteString(strconv.Itoa(int(x)))
	}
	return sb.String()
}

// statsRow is a driver_stats row: id, event time, then the six features.
func statsRow(id int, ts, conv string) []string {
	return []string{strconv.Itoa(id), ts, conv, "0.5", "308", "4.5", "sedan", "true"}
}

func TestWriterFeastLayout(t *testing.T) {
	r := startRedis(t)
	v := testViews(t)
	s := testSchema(t, v, "driver_stats")
	b := textBatch(t, s, []string{"1001", "2026-05-01T10:00:00.25Z", "0.5", "", "308", "", "ab", "true"})
	if got := outcomes(writeBatch(t, r.w, b)); got != "1" {
		t.Fatalf("outcomes %s", got)
	}
	all := dump(t, r.c)
	// Key: entity key serialization v3 of driver_id=1001, then the project.
	key := string(mustHex(t, "01000000"+"02000000"+"09000000")) + "driver_id" +
		string(mustHex(t, "04000000"+"08000000"+"e903000000000000")) + "lariat_test"
	h, ok := all[key]
	if len(all) != 1 || !ok {
		t.Fatalf("keys %q, want only %q", keysOf(all), key)
	}
	want := map[string]string{
		featurefetch.FieldHash("driver_stats", "conv_rate"):       string(mustHex(t, "350000003f")),
		featurefetch.FieldHash("driver_stats", "acc_rate"):        "",
		featurefetch.FieldHash("driver_stats", "avg_daily_trips"): string(mustHex(t, "20b402")),
		featurefetch.FieldHash("driver_stats", "rating"):          "",
		featurefetch.FieldHash("driver_stats", "vehicle_type"):    string(mustHex(t, "12026162")),
		featurefetch.FieldHash("driver_stats", "is_active"):       string(mustHex(t, "3801")),
	}
	want["_ts:driver_stats"] = string(featurefetch.AppendTimestamp(nil, time.Date(2026, 5, 1, 10, 0, 0, 250_000_000, time.UTC)))
	if len(h) != len(want) {
		t.Fatalf("fields %d, want %d", len(h), len(want))
	}
	for f, val := range want {
		if h[f] != val {
			t.Errorf("field %x = %x, want %x", f, h[f], val)
		}
	}
	if ttl := pttl(t, r.c, key); ttl != -1 {
		t.Fatalf("PTTL %d: driver_id hashes hold views without ttl, want no expiry", ttl)
	}
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func keysOf(m map[string]map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func pttl(t testing.TB, c rueidis.Client, key string) int64 {
	t.Helper()
	n, err := c.Do(context.Background(), c.B().Pttl().Key(key).Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWriterNewestWins(t *testing.T) {
	r := startRedis(t)
	v := testViews(t)
	s := testSchema(t, v, "driver_stats")
	conv := func() string {
		return fetchRows(t, v, r.c, "driver_stats", "[7]")
	}
	f := func(rows [][]string, wantOutcomes, wantConv string) {
		t.Helper()
		if got := outcomes(writeBatch(t, r.w, textBatch(t, s, rows...))); got != wantOutcomes {
			t.Fatalf("outcomes %s, want %s", got, wantOutcomes)
		}
		if got := conv(); !strings.Contains(got, `"conv_rate":`+wantConv+`,`) {
			t.Fatalf("row %s, want conv_rate %s", got, wantConv)
		}
	}
	f([][]string{statsRow(7, "2026-05-01T10:00:00Z", "0.1")}, "1", "0.1")
	// Older: skipped, even by a nanosecond.
	f([][]string{statsRow(7, "2026-05-01T09:59:59.999999999Z", "0.2")}, "0", "0.1")
	// Equal: skipped, as in Feast (stored >= new), so the first row written
	// with an event time stays.
	f([][]string{statsRow(7, "2026-05-01T10:00:00Z", "0.3")}, "0", "0.1")
	// Within one batch rows apply in order: older and equal ones skipped.
	f([][]string{
		statsRow(7, "2026-05-01T10:00:01Z", "0.4"),
		statsRow(7, "2026-05-01T10:00:00.5Z", "0.5"),
		statsRow(7, "2026-05-01T10:00:01Z", "0.6"),
		statsRow(8, "2026-05-01T10:00:00Z", "0.7"),
		statsRow(7, "2026-05-01T10:00:01.000000001Z", "0.6"),
	}, "10011", "0.6")
	// Another view in the same hash keeps its own timestamp.
	trips := testSchema(t, v, "driver_trips")
	b := textBatch(t, trips, []string{"7", "2020-01-01T00:00:00Z", "[1.5]", "[5]", `["a"]`})
	if got := outcomes(writeBatch(t, r.w, b)); got != "1" {
		t.Fatalf("driver_trips outcomes %s", got)
	}
	f([][]string{statsRow(7, "2026-05-01T10:00:00Z", "0.8")}, "0", "0.6")
}

// TestWriterStoredTimestamps checks the script's reading of timestamps
// stored by other writers: seconds only (Feast's Python writer), seconds
// and nanos, before 1970 (negative varints), the epoch (empty message) and
// unreadable bytes (the epoch, as readers take them).
func TestWriterStoredTimestamps(t *testing.T) {
	r := startRedis(t)
	v := testViews(t)
	s := testSchema(t, v, "driver_stats")
	ctx := context.Background()
	id := 100
	f := func(stored []byte, newTime string, wantWritten bool) {
		t.Helper()
		id++
		b := textBatch(t, s, statsRow(id, "2000-01-01T00:00:00Z", "0.1"))
		key := b.buf[b.rows[0].key.start:b.rows[0].key.end]
		if err := r.c.Do(ctx, r.c.B().Hset().Key(string(key)).FieldValue().FieldValue("_ts:driver_stats", string(stored)).Build()).Error(); err != nil {
			t.Fatal(err)
		}
		b = textBatch(t, s, statsRow(id, newTime, "0.2"))
		got := writeBatch(t, r.w, b)[0] == outcomeWritten
		if got != wantWritten {
			t.Fatalf("stored %x, new %s: written %v, want %v", stored, newTime, got, wantWritten)
		}
	}
	ts := func(sec int64, nsec int) []byte {
		return featurefetch.AppendTimestamp(nil, time.Unix(sec, int64(nsec)))
	}
	secondsOnly := func(sec int64) []byte { return featurefetch.AppendTimestamp(nil, time.Unix(sec, 0)) }

	f(secondsOnly(1777629600), "2026-05-01T10:00:00Z", false) // equal: skipped
	f(secondsOnly(1777629600), "2026-05-01T09:59:59.999Z", false)
	f(secondsOnly(1777629600), "2026-05-01T10:00:00.001Z", true)
	f(ts(1777629600, 500), "2026-05-01T10:00:00.000000499Z", false)
	f(ts(1777629600, 500), "2026-05-01T10:00:00.000000500Z", false)
	f(ts(1777629600, 500), "2026-05-01T10:00:00.000000501Z", true)
	f(ts(-86400, 0), "1969-12-31T00:00:00Z", false)
	f(ts(-86400, 0), "1969-12-31T00:00:00.000000001Z", true)
	f(ts(-86400, 0), "1969-12-30T23:59:59Z", false)
	f(ts(-1, 999_999_999), "1969-12-31T23:59:59.999999998Z", false)
	f(ts(-1, 999_999_999), "1970-01-01T00:00:00Z", true)
	f(ts(-62135596800, 0), "0001-01-01T00:00:00Z", false) // year 1: a 10-byte varint
	f(ts(-62135596800, 0), "0001-01-01T00:00:01Z", true)
	f(ts(253402300799, 0), "9999-12-31T23:59:58Z", false)
	f(nil, "1970-01-01T00:00:00Z", false) // empty: the epoch
	f(nil, "1970-01-01T00:00:00.001Z", true)
	f(nil, "1969-12-31T23:59:59Z", false)
	f([]byte{0xff, 0xff}, "1970-01-01T00:00:00Z", false) // unreadable: the epoch
	f([]byte{0xff, 0xff}, "1970-01-01T00:00:01Z", true)
	f([]byte{0x08, 0x80}, "1969-12-31T23:59:59Z", false)
}

func TestWriterWrongTypeKey(t *testing.T) {
	r := startRedis(t)
	v := testViews(t)
	s := testSchema(t, v, "driver_stats")
	b := textBatch(t, s, statsRow(1, "2026-05-01T10:00:00Z", "0.1"), statsRow(2, "2026-05-01T10:00:00Z", "0.1"), statsRow(3, "2026-05-01T10:00:00Z", "0.1"))
	key := string(b.buf[b.rows[1].key.start:b.rows[1].key.end])
	if err := r.c.Do(context.Background(), r.c.B().Set().Key(key).Value("x").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if got := outcomes(writeBatch(t, r.w, b)); got != "121" {
		t.Fatalf("outcomes %s, want 121", got)
	}
	want := "test:2: redis: WRONGTYPE Operation against a key holding the wrong kind of value"
	if len(b.failures) != 1 || b.failures[0].Error() != want || b.failures[0].Reason != ReasonRedis {
		t.Fatalf("failures %v, want %q", b.failures, want)
	}
}

func TestWriterKeyTTL(t *testing.T) {
	r := startRedis(t)
	v := testViews(t)
	ctx := context.Background()
	const hour = int64(time.Hour / time.Millisecond)
	f := func(view string, opt SchemaOptions, before func(key string), wantLow, wantHigh int64) {
		t.Helper()
		s, err := NewSchema(v, view, opt)
		if err != nil {
			t.Fatal(err)
		}
		cells := []string{"c" + strconv.Itoa(rand.IntN(1e9)), "2026-05-01T10:00:00Z"}
		for range s.view.Features {
			cells = append(cells, "x")
		}
		if view == "customer_profile" {
			cells[2] = "1.5"
		}
		b := textBatch(t, s, cells)
		key := string(b.buf[b.rows[0].key.start:b.rows[0].key.end])
		if before != nil {
			before(key)
		}
		writeBatch(t, r.w, b)
		if got := pttl(t, r.c, key); got < wantLow || got > wantHigh {
			t.Fatalf("%s: PTTL %d, want [%d, %d]", view, got, wantLow, wantHigh)
		}
	}
	do := func(cmd rueidis.Completed) {
		if err := r.c.Do(ctx, cmd).Error(); err != nil {
			t.Fatal(err)
		}
	}
	// customer_recent (2h) shares its hashes with customer_profile (168h):
	// both set the larger expiry.
	f("customer_recent", SchemaOptions{}, nil, 167*hour, 168*hour)
	f("customer_profile", SchemaOptions{}, nil, 167*hour, 168*hour)
	// A shorter expiry grows; a longer one stays.
	f("customer_recent", SchemaOptions{}, func(k string) {
		do(r.c.B().Hset().Key(k).FieldValue().FieldValue("x", "y").Build())
		do(r.c.B().Pexpire().Key(k).Milliseconds(1000).Build())
	}, 167*hour, 168*hour)
	f("customer_recent", SchemaOptions{}, func(k string) {
		do(r.c.B().Hset().Key(k).FieldValue().FieldValue("x", "y").Build())
		do(r.c.B().Pexpire().Key(k).Milliseconds(1000 * hour).Build())
	}, 999*hour, 1000*hour)
	// A hash that exists without expiry keeps none.
	f("customer_recent", SchemaOptions{}, func(k string) {
		do(r.c.B().Hset().Key(k).FieldValue().FieldValue("x", "y").Build())
	}, -1, -1)
	// Overrides.
	f("customer_recent", SchemaOptions{KeyTTL: NoKeyTTL}, nil, -1, -1)
	f("customer_recent", SchemaOptions{KeyTTL: time.Hour}, nil, hour-60_000, hour)
}

func TestWriterReloadsLostScript(t *testing.T) {
	r := startRedis(t)
	v := testViews(t)
	s := testSchema(t, v, "driver_stats")
	if err := r.c.Do(context.Background(), r.c.B().ScriptFlush().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if got := outcomes(writeBatch(t, r.w, textBatch(t, s, statsRow(1, "2026-05-01T10:00:00Z", "0.1")))); got != "1" {
		t.Fatalf("outcomes %s", got)
	}
	// A restarted server (empty, no scripts) on the same address.
	r.srv.Restart()
	var err error
	if !testwait.Within(testwait.Timeout, func() bool {
		err = r.w.write(context.Background(), textBatch(t, s, statsRow(1, "2026-05-01T10:00:00Z", "0.1")))
		return err == nil
	}) {
		t.Fatalf("write after restart: %v", err)
	}
	if got := fetchRows(t, v, r.c, "driver_stats", "1"); !strings.Contains(got, `"conv_rate":0.1`) {
		t.Fatalf("read back %s", got)
	}
}

// TestWriterConcurrentNewestWins has writers on their own connections push
// rows for the same keys with random event times; each key must end with
// its newest row, whole (values match the timestamp).
func TestWriterConcurrentNewestWins(t *testing.T) {
	r := startRedis(t)
	v := testViews(t)
	s := testSchema(t, v, "driver_stats")
	const writers, rounds, keys = 6, 40, 5
	var mu sync.Mutex
	newest := map[int]int64{} // key -> max event time (ms)
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		rc := connectRedis(t, r.srv)
		rng := rand.New(rand.NewPCG(uint64(w), 7))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				b := newBatch(s, keys*2)
				for j := 0; j < keys*2; j++ {
					id := rng.IntN(keys)
					ms := 1_700_000_000_000 + rng.Int64N(1_000_000)
					ts := time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
					cells := []string{strconv.Itoa(id), ts, "0.5", "0.5", strconv.FormatInt(ms, 10), "1", ts, "true"}
					if err := textRow(b, Pos{}, func(slot int) string { return cells[slot] }); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					newest[id] = max(newest[id], ms)
					mu.Unlock()
				}
				if err := rc.w.write(context.Background(), b); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for id := 0; id < keys; id++ {
		ms, ok := newest[id]
		if !ok {
			continue
		}
		got := fetchRows(t, v, r.c, "driver_stats", strconv.Itoa(id))
		ts := time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
		want := fmt.Sprintf(`"avg_daily_trips":%d,"rating":1,"vehicle_type":"%s"`, ms, ts)
		if !strings.Contains(got, want) {
			t.Fatalf("key %d: %s, want newest row %s", id, got, want)
		}
	}
}
