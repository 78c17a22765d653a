package predlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// startKafka runs an in-process Kafka cluster (franz-go's kfake) on
// 127.0.0.1 with the topic, and a switch that makes every broker drop
// its connections while it is on.
func startKafka(t *testing.T, topic string) (*kfake.Cluster, *atomic.Bool) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	var down atomic.Bool
	c.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if down.Load() {
			return nil, errors.New("broker down"), true
		}
		return nil, nil, false
	})
	return c, &down
}

// consume reads n records of topic, or fails after a bounded wait.
func consume(t *testing.T, c *kfake.Cluster, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records", len(recs), n)
		}
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
	}
	return recs
}

func TestKafkaURL(t *testing.T) {
	c, err := ParseKafkaURL("kafka://a:9092,b:9093/predictions?compression=zstd&linger=5ms&max_buffered=10&delivery_timeout=1m&client_id=gw1")
	if err != nil || strings.Join(c.Brokers, ",") != "a:9092,b:9093" || c.Topic != "predictions" || c.Linger != 5*time.Millisecond ||
		c.MaxBuffered != 10 || c.DeliveryTimeout != time.Minute || c.ClientID != "gw1" || c.Compression != kgo.ZstdCompression() {
		t.Fatalf("%+v %v", c, err)
	}
	bad := func(u, want string) {
		t.Helper()
		if _, err := ParseKafkaURL(u); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: got %v, want %q", u, err, want)
		}
	}
	bad("kafka://a:9092", "name one topic")
	bad("kafka://a/t", `broker "a" is not HOST:PORT`)
	bad("kafka://a:1/t?compression=brotli", "compression \"brotli\"")
	bad("kafka://a:1/t?lingr=1ms", `unknown parameter "lingr"`)
	bad("kafka://a:1/t?max_buffered=0", "max_buffered")
	if _, err := Open("redis://x", Options{}); err == nil || !strings.Contains(err.Error(), "want file:///DIR or kafka://") {
		t.Fatalf("unsupported scheme: %v", err)
	}
}

// TestKafkaSinkProduces sends records of three routes and reads them back:
// one JSON object each with the schema header, keyed by route, a route's
// records in one partition in order.
func TestKafkaSinkProduces(t *testing.T) {
	c, _ := startKafka(t, "predictions")
	l, err := Open("kafka://"+c.ListenAddrs()[0]+"/predictions?linger=1ms", Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 5, 1, 13, 0, 0, 0, time.UTC)
	want := map[string]*Record{}
	for i := 0; i < 300; i++ {
		r := sampleRecord(fmt.Sprintf("r-%03d", i), now.Add(time.Duration(i)*time.Millisecond))
		r.Route = []string{"a", "b", "c"}[i%3]
		want[r.RequestID] = r
		rec := l.Acquire()
		*rec = *r
		l.Submit(rec)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	recs := consume(t, c, "predictions", 300)
	partOf := map[string]int32{}
	last := map[string]string{}
	for _, kr := range recs {
		var got Record
		if err := json.Unmarshal(kr.Value, &got); err != nil {
			t.Fatal(err)
		}
		w := want[got.RequestID]
		got.Time, got.Features[0].EventTime = got.Time.UTC(), ptr(got.Features[0].EventTime.UTC())
		if w == nil || !reflect.DeepEqual(&got, w) {
			t.Fatalf("record %s:\n got %+v\nwant %+v", got.RequestID, got, w)
		}
		if string(kr.Key) != got.Route || len(kr.Headers) != 1 || kr.Headers[0].Key != "lariat-schema" || string(kr.Headers[0].Value) != SchemaVersion {
			t.Fatalf("record %s: key %q headers %+v", got.RequestID, kr.Key, kr.Headers)
		}
		if p, ok := partOf[got.Route]; ok && p != kr.Partition {
			t.Fatalf("route %s in partitions %d and %d", got.Route, p, kr.Partition)
		}
		partOf[got.Route] = kr.Partition
		if got.RequestID < last[got.Route] {
			t.Fatalf("route %s: %s after %s", got.Route, got.RequestID, last[got.Route])
		}
		last[got.Route] = got.RequestID
	}
}

// TestKafkaBrokerDown stops the broker for a while: records are buffered
// up to max_buffered, the rest dropped and counted, the log reports the
// stall, and once the broker is back the buffered records arrive and the
// log is healthy again.
func TestKafkaBrokerDown(t *testing.T) {
	c, down := startKafka(t, "predictions")
	l, err := Open("kafka://"+c.ListenAddrs()[0]+"/predictions?linger=1ms&max_buffered=50", Options{Logger: quietLogger(), FlushInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	submit := func(from, n int) {
		for i := from; i < from+n; i++ {
			rec := l.Acquire()
			*rec = *sampleRecord(fmt.Sprintf("r-%03d", i), time.Now())
			l.Submit(rec)
		}
	}
	submit(0, 20)
	waitFor(t, "first records delivered", func() bool {
		return l.Status().OK && l.Status().Written >= 20 && l.sink.(*KafkaSink).cl.BufferedProduceRecords() == 0
	})

	down.Store(true)
	dropped0 := l.Status().Dropped
	submit(20, 200)
	waitFor(t, "the stall reported", func() bool { return !l.Status().OK })
	st := l.Status()
	if lost := st.Dropped - dropped0; lost < 150-1 || lost > 200 || !strings.Contains(st.Error, "nothing delivered") {
		t.Fatalf("while down: %+v (%d dropped)", st, lost)
	}

	down.Store(false)
	waitFor(t, "recovery", func() bool { return l.Status().OK })
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lost := int(l.Status().Dropped - dropped0)
	recs := consume(t, c, "predictions", 220-lost)
	if len(recs) != 220-lost {
		t.Fatalf("consumed %d records, want %d (%d dropped)", len(recs), 220-lost, lost)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
