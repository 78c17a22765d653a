package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/lariat-gw/lariat/internal/testwait"
	"github.com/lariat-gw/lariat/predlog"
)

// adminGet returns the body of an admin path.
func adminGet(t *testing.T, gp *gatewayProc, path string) string {
	t.Helper()
	resp, err := clientPool.Get(gp.admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// logState reads the prediction log's /readyz detail and its drop count.
func logState(t *testing.T, gp *gatewayProc) (predlog.Status, int) {
	t.Helper()
	var ready struct {
		Ready   bool
		Details struct {
			PredictionLog predlog.Status `json:"prediction_log"`
		}
	}
	if err := json.Unmarshal([]byte(adminGet(t, gp, "/readyz")), &ready); err != nil {
		t.Fatal(err)
	}
	if !ready.Ready {
		t.Fatal("the gateway is not ready")
	}
	dropped := 0
	for _, m := range droppedRe.FindAllStringSubmatch(adminGet(t, gp, "/metrics"), -1) {
		n, _ := strconv.Atoi(m[1])
		dropped += n
	}
	return ready.Details.PredictionLog, dropped
}

var droppedRe = regexp.MustCompile(`(?m)^lariat_prediction_log_dropped_total\{reason="[a-z_]+"\} (\d+)$`)

// waitUntil polls cond for up to a minute: the broker's clients back off
// between reconnections.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !testwait.Within(time.Minute, cond) {
		t.Fatalf("timed out after a minute waiting for %s", what)
	}
}

// TestPredictionLogKafka does through kafka:// (to franz-go's in-process
// cluster) what TestPredictionLogSIGTERM does through file://, then
// stops the broker for a while: requests keep being answered, records are
// buffered up to max_buffered and the rest dropped and counted, /readyz
// reports the stall; when the broker is back the buffered records arrive.
// Every record read back matches its answer, none twice.
func TestPredictionLogKafka(t *testing.T) {
	const topic = "predictions"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var down atomic.Bool
	c.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if down.Load() {
			return nil, errors.New("broker down"), true
		}
		return nil, nil, false
	})
	cons, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	var got []*kgo.Record
	consumeTo := func(n int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for len(got) < n {
			fs := cons.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("consumed %d of %d records", len(got), n)
			}
			fs.EachRecord(func(r *kgo.Record) { got = append(got, r) })
		}
	}

	fx := newLogFixture(t)
	const maxBuffered = 500
	gp := fx.start(t, fmt.Sprintf("kafka://%s/%s?max_buffered=%d&linger=5ms", c.ListenAddrs()[0], topic, maxBuffered),
		"--prediction-log-flush", "100ms")
	const n = 10_000
	sent := sendAll(t, gp, n, 8)
	consumeTo(n)

	// The broker goes away: answers do not change; the log buffers,
	// drops, counts and says so.
	down.Store(true)
	more := sendAll(t, gp, 2_000, 4)
	for id, a := range more {
		sent[id] = a
	}
	waitUntil(t, "the stall in /readyz", func() bool { st, _ := logState(t, gp); return !st.OK })
	_, droppedDown := logState(t, gp)
	if droppedDown < 2_000-maxBuffered-100 || droppedDown > 2_000 {
		t.Fatalf("%d records dropped while the broker was down, want about %d", droppedDown, 2_000-maxBuffered)
	}

	down.Store(false)
	waitUntil(t, "recovery in /readyz", func() bool { st, _ := logState(t, gp); return st.OK })
	_, dropped := logState(t, gp)
	if err := gp.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(t, gp); err != nil {
		t.Fatalf("lariat serve after SIGTERM: %v", err)
	}
	total := n + 2_000 - dropped
	consumeTo(total)
	// Nothing more arrives.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	cons.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got = append(got, r) })
	cancel()
	if len(got) != total {
		t.Fatalf("consumed %d records, want %d (%d requests, %d dropped)", len(got), total, n+2_000, dropped)
	}
	t.Logf("broker down: 2000 requests answered 200, %d records dropped and counted, %d delivered once it was back", dropped, 2_000-dropped)
	seed := seedValues(t)
	seen := map[string]bool{}
	for _, kr := range got {
		var r predlog.Record
		if err := json.Unmarshal(kr.Value, &r); err != nil {
			t.Fatal(err)
		}
		a, ok := sent[r.RequestID]
		if !ok || seen[r.RequestID] {
			t.Fatalf("record %q: unknown or read twice", r.RequestID)
		}
		seen[r.RequestID] = true
		if err := checkRecord(&r, a, seed); err != nil {
			t.Fatal(err)
		}
		if string(kr.Key) != "ranked" {
			t.Fatalf("record key %q", kr.Key)
		}
	}
}
