package tasks

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tidwall/gjson"

	"github.com/lariat-gw/lariat/internal/testwait"
	"github.com/lariat-gw/lariat/internal/upstreamtest"
)

// waitCounter waits (bounded) until counter name reaches want.
func waitCounter(t *testing.T, name string, want uint64) {
	t.Helper()
	if !testwait.Within(testwait.Timeout, func() bool { return counter(name) >= want }) {
		t.Fatalf("%s = %d after %s, want %d", name, counter(name), testwait.Timeout, want)
	}
}

func TestShadowOffTheRequestPath(t *testing.T) {
	inBubble(t, func(b *bubble) {
		t := b.t
		primary := b.start(upstreamtest.JSON(`{"score":0.5}`))
		shadow := b.start(nil)
		shadow.Set(shadow.Hang())
		c := compileRoute(t, hedgeRoute("shadow-hang", primary.URL("/p"), "1s",
			fmt.Sprintf("      shadow: {address: %s, sample: 1, timeout: 5s, max_in_flight: 2}", shadow.URL("/s"))), b.env)
		dropped := `lariat_shadow_total{route="shadow-hang",task="m",result="dropped"}`
		dropped0 := counter(dropped)
		start := time.Now()
		for i := 0; i < 5; i++ {
			r, err := c.run("m", `{"i":1}`, nil)
			if err != nil || string(r.Body) != `{"score":0.5}` {
				t.Fatalf("%v %s", err, r.Body)
			}
		}
		if took := time.Since(start); took != 0 {
			t.Fatalf("five calls took %s while their shadows hang", took)
		}
		// Every primary call answered while the shadow calls hang; two are
		// in flight, three were dropped.
		synctest.Wait()
		if d := counter(dropped) - dropped0; d != 3 {
			t.Fatalf("%d shadow calls dropped, want 3", d)
		}
		if n, in := shadow.Requests.Load(), shadow.InFlight.Load(); n != 2 || in != 2 {
			t.Fatalf("shadow saw %d requests, %d in flight; want 2 and 2", n, in)
		}
		if primary.Requests.Load() != 5 || shadow.LastBody() != `{"i":1}` || shadow.LastHeader("Host") != shadow.Addr {
			t.Fatalf("primary %d, shadow body %s host %s", primary.Requests.Load(), shadow.LastBody(), shadow.LastHeader("Host"))
		}
	})
}

func TestShadowCompares(t *testing.T) {
	primary := upstreamtest.Start(t, upstreamtest.JSON(`{"score":0.5,"id":"x"}`))
	shadow := upstreamtest.Start(t, nil)
	c := compileRoute(t, hedgeRoute("shadow-cmp", primary.URL("/p"), "1s",
		fmt.Sprintf("      shadow: {address: %s, sample: 1.0, compare: score, tolerance: 0.01}", shadow.URL("/s"))), nil)
	name := func(result string) string {
		return `lariat_shadow_total{route="shadow-cmp",task="m",result="` + result + `"}`
	}
	f := func(b upstreamtest.Behavior, result string) {
		t.Helper()
		shadow.Set(b)
		want := counter(name(result)) + 1
		if _, err := c.run("m", `{}`, nil); err != nil {
			t.Fatal(err)
		}
		waitCounter(t, name(result), want)
	}
	f(upstreamtest.JSON(`{"score":0.505,"id":"y"}`), "agree")
	f(upstreamtest.JSON(`{"score":0.6}`), "disagree")
	f(upstreamtest.JSON(`{"other":0.5}`), "disagree")
	f(upstreamtest.Status(500), "error")
	f(upstreamtest.Garbage(), "error")
}

func TestShadowInfer(t *testing.T) {
	prod := startV2(t, "ranker", "")
	cand := startV2(t, "ranker-v2", "")
	c := compileRoute(t, inferRoute(prod.URL(""), fmt.Sprintf(`
      outputs: [scores]
      inputs: [{name: x, datatype: FP32, from: '{{ .request.v }}'}]
      shadow: {address: %s, model_name: ranker-v2, sample: 1, compare: scores}`, cand.URL(""))), nil)
	agree := `lariat_shadow_total{route="infer-test",task="rank",result="agree"}`
	want := counter(agree) + 1
	r, err := c.run("rank", `{"v":[1,2]}`, nil)
	if err != nil || string(r.Body) != `{"scores":[1,2]}` {
		t.Fatalf("%v %s", err, r.Body)
	}
	waitCounter(t, agree, want)
	if cand.Calls.Load() != 1 || cand.LastPath() != "/v2/models/ranker-v2/infer" {
		t.Fatalf("candidate calls %d path %s (%s)", cand.Calls.Load(), cand.LastPath(), cand.LastError())
	}
}

func TestAgrees(t *testing.T) {
	f := func(a, b string, tol float64, want bool) {
		t.Helper()
		if got := agrees(gjson.Parse(a), gjson.Parse(b), tol, 0); got != want {
			t.Errorf("agrees(%s, %s, %v) = %v", a, b, tol, got)
		}
	}
	f(`1`, `1.005`, 0.01, true)
	f(`1`, `1.02`, 0.01, false)
	f(`"a"`, `"a"`, 0, true)
	f(`"a"`, `"b"`, 0, false)
	f(`1`, `"1"`, 1, false)
	f(`null`, `null`, 0, true)
	f(`true`, `false`, 0, false)
	f(`[1,2,3]`, `[1,2,3.001]`, 0.01, true)
	f(`[1,2]`, `[1,2,3]`, 0.01, false)
	f(`[1,2,3]`, `[1,2]`, 0.01, false)
	f(`{"a":1,"b":[1]}`, `{"b":[1],"a":1.001}`, 0.01, true)
	f(`{"a":1}`, `{"a":1,"b":2}`, 0.01, false)
	f(`{"a":1}`, `{"b":1}`, 0.01, false)
	f(``, ``, 0, true)
	f(`1`, ``, 0, false)
	f(`[1]`, `{"0":1}`, 0, false)
}
