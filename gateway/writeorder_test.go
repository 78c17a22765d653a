package gateway

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/internal/testwait"
	"github.com/lariat-gw/lariat/internal/upstreamtest"
)

// writeOrderRoute declares tasks named in order, each calling its
// upstream and writing its answer to response.body with mode.
func writeOrderRoute(mode string, timeout string, tasks ...[2]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: order\nendpoint: /order\ntimeout: %s\ntasks:\n", timeout)
	for _, t := range tasks {
		fmt.Fprintf(&b, "  %s:\n    type: http\n    inputs: {address: %s}\n    output: {path: response.body, write: %s}\n", t[0], t[1], mode)
		if strings.HasPrefix(t[0], "d_") {
			fmt.Fprintf(&b, "    on_error: {default: %q}\n", t[0])
		}
	}
	return b.String()
}

// Writes apply in the order the tasks finish, whatever their declaration
// order: a fast task declared first or last is the first writer.
func TestWritesApplyInCompletionOrder(t *testing.T) {
	fast := upstreamtest.Start(t, upstreamtest.JSON(`"fast"`))
	slow := upstreamtest.Start(t, nil)
	f := func(mode, want string, fastFirst bool) {
		t.Helper()
		// The slow task answers once the fast one has, and 100ms more for
		// the gateway to take the fast answer on a loaded machine.
		before := fast.Completed()
		slow.Set(func(n int64, rc *fasthttp.RequestCtx) {
			testwait.Within(testwait.Timeout, func() bool { return fast.Completed() > before })
			time.Sleep(100 * time.Millisecond)
			upstreamtest.JSON(`"slow"`)(n, rc)
		})
		tasks := [][2]string{{"fast", fast.URL("/")}, {"slow", slow.URL("/")}}
		if !fastFirst {
			tasks[0], tasks[1] = tasks[1], tasks[0]
		}
		tg := startGateway(t, map[string]string{"o.yaml": writeOrderRoute(mode, "5s", tasks...)}, nil)
		if a := tg.post(t, "/order", `{}`); a.status != 200 || a.body != want {
			t.Fatalf("write %s, fast declared first %v: answer %d %s, want %s", mode, fastFirst, a.status, a.body, want)
		}
	}
	for _, fastFirst := range []bool{true, false} {
		f("ignoreIfExists", `"fast"`, fastFirst)
		f("overwrite", `"slow"`, fastFirst)
		f("append", `["fast","slow"]`, fastFirst)
	}
}

// Tasks that take their defaults at the route deadline finish together:
// their writes apply in declaration order.
func TestDeadlineDefaultsApplyInDeclarationOrder(t *testing.T) {
	hang := upstreamtest.Start(t, nil)
	hang.Set(hang.Hang())
	fast := upstreamtest.Start(t, upstreamtest.JSON(`"fast"`))
	f := func(want string, tasks ...[2]string) {
		t.Helper()
		// The deadline leaves the fast task a generous time on a loaded
		// machine; the others hang until it.
		tg := startGateway(t, map[string]string{"o.yaml": writeOrderRoute("append", "1s", tasks...)}, nil)
		if a := tg.post(t, "/order", `{}`); a.status != 200 || a.body != want {
			t.Fatalf("answer %d %s, want %s", a.status, a.body, want)
		}
	}
	f(`["fast","d_a","d_b"]`, [2]string{"d_a", hang.URL("/")}, [2]string{"d_b", hang.URL("/")}, [2]string{"fast", fast.URL("/")})
	f(`["fast","d_b","d_a"]`, [2]string{"d_b", hang.URL("/")}, [2]string{"fast", fast.URL("/")}, [2]string{"d_a", hang.URL("/")})
}
