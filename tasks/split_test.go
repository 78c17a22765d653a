package tasks

import (
	"strconv"
	"strings"
	"testing"

	"github.com/lariat-gw/lariat/internal/stickyhash"
)

func TestSplitArms(t *testing.T) {
	y := `
name: sp
endpoint: /sp
tasks:
  ab:
    type: split
    inputs:
      sticky: '{{ .request.user.id }}'
      arms:
        - {name: control, weight: 90, run: [a]}
        - {name: off, weight: 0, run: [c]}
        - {name: canary, weight: 10, run: [b]}
  a: {type: http, inputs: {address: http://a.local/}}
  b: {type: http, inputs: {address: http://b.local/}}
  c: {type: http, inputs: {address: http://c.local/}}
`
	c := compileRoute(t, y, nil)
	g := c.tasks["ab"].(Gate)
	if bs := g.Branches(); len(bs) != 3 || bs[2].Name != "canary" || bs[2].Tasks[0].Value != "b" {
		t.Fatalf("branches %+v", bs)
	}
	arm := func(body string) (int, string) {
		x := c.exchange(body, nil, nil)
		r := &x.Results[c.index["ab"]]
		if err := g.Run(x, r); err != nil {
			t.Fatal(err)
		}
		if string(r.Body) != `{"branch":"`+r.BranchName+`"}` {
			t.Fatalf("body %s", r.Body)
		}
		return r.Branch, r.BranchName
	}
	// The same key always gets the same arm; keys spread by weight.
	counts := map[string]int{}
	const users = 2000
	for u := 0; u < users; u++ {
		body := `{"user":{"id":"u-` + strconv.Itoa(u) + `"}}`
		b, name := arm(body)
		for k := 0; k < 3; k++ {
			if b2, _ := arm(body); b2 != b {
				t.Fatalf("user %d got arms %d and %d", u, b, b2)
			}
		}
		counts[name]++
	}
	// 90/10 over 2000 keys: mean 200 canaries, sd 13.4; ±80 is 6 sd.
	if counts["off"] != 0 || counts["canary"] < 120 || counts["canary"] > 280 {
		t.Fatalf("arms %v", counts)
	}
	// Without a key the arm is random, still by weight.
	counts = map[string]int{}
	for i := 0; i < users; i++ {
		_, name := arm(`{}`)
		counts[name]++
	}
	if counts["off"] != 0 || counts["canary"] < 120 || counts["canary"] > 280 {
		t.Fatalf("random arms %v", counts)
	}
	// The hash is fixed: replicas and restarts agree.
	if b, _ := arm(`{"user":{"id":"u-42"}}`); stickyhash.Sum64(splitHashOffset, []byte("u-42"))%100 >= 90 != (b == 2) {
		t.Fatalf("arm %d does not follow the hash", b)
	}
}

func TestSplitLoadErrors(t *testing.T) {
	f := func(inputs, want string) {
		t.Helper()
		y := "name: sp\nendpoint: /sp\ntasks:\n  a: {type: http, inputs: {address: http://a.local/}}\n  sp:\n    type: split\n    inputs:\n" + inputs
		_, err := tryCompileRoute(y, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s\nerror %v, want %q", inputs, err, want)
		}
	}
	f("      arms: [{name: a, weight: 1}]\n", "give at least two arms")
	f("      arms: [{name: a, weight: 0}, {name: b, weight: 0}]\n", "the weights add up to 0")
	f("      arms: [{name: a, weight: -1}, {name: b, weight: 1}]\n", "weight must be between 0 and 1000000")
	f("      arms: [{name: a, weight: 1}, {name: a, weight: 1}]\n", `duplicate arm "a"`)
	f("      arms: [{weight: 1}, {name: a, weight: 1}]\n", "arms[0].name is required")
	f("      arms: [{name: a, weight: 1.5}, {name: b, weight: 1}]\n", "expected an integer")
	f("      sticky: '{{ .user }}'\n      arms: [{name: a, weight: 1}, {name: b, weight: 1}]\n", "inputs.sticky: unknown template value")
}
