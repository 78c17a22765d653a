package tasks

import (
	"strings"
	"testing"
)

const switchRoute = `
name: sw
endpoint: /sw
tasks:
  fraud:
    type: http
    inputs: {address: http://fraud.local/}
  route:
    type: switch
    inputs:
      cases:
        - name: indonesia
          when: .request.country == "ID" && .tasks.fraud.body.score < 0.5
          run: [id_model]
        - when: .headers.X-Beta
          run: [beta_model]
      default: [base_model]
  id_model: {type: http, inputs: {address: http://id.local/}}
  beta_model: {type: http, inputs: {address: http://beta.local/}}
  base_model: {type: http, inputs: {address: http://base.local/}}
`

func TestSwitchPicksFirstMatch(t *testing.T) {
	c := compileRoute(t, switchRoute, nil)
	g := c.tasks["route"].(Gate)
	var names []string
	for _, b := range g.Branches() {
		var ts []string
		for _, s := range b.Tasks {
			ts = append(ts, s.Value)
		}
		names = append(names, b.Name+":"+strings.Join(ts, ","))
	}
	if got := strings.Join(names, " "); got != "indonesia:id_model case1:beta_model default:base_model" {
		t.Fatalf("branches %s", got)
	}
	f := func(body, beta, score string, want int, wantName string) {
		t.Helper()
		hdr := map[string]string{}
		if beta != "" {
			hdr["X-Beta"] = beta
		}
		x := c.exchange(body, map[string]string{"fraud": `{"score":` + score + `}`}, hdr)
		r := &x.Results[c.index["route"]]
		if err := g.Run(x, r); err != nil {
			t.Fatal(err)
		}
		if r.Branch != want || r.BranchName != wantName || string(r.Body) != `{"branch":"`+wantName+`"}` {
			t.Errorf("%s beta=%q score=%s: branch %d %q %s, want %d %q", body, beta, score, r.Branch, r.BranchName, r.Body, want, wantName)
		}
	}
	f(`{"country":"ID"}`, "", "0.1", 0, "indonesia")
	f(`{"country":"ID"}`, "1", "0.1", 0, "indonesia")
	f(`{"country":"ID"}`, "1", "0.9", 1, "case1")
	f(`{"country":"MY"}`, "", "0.1", 2, "default")
	f(`{}`, "", "null", 2, "default")
}

func TestSwitchLoadErrors(t *testing.T) {
	f := func(inputs, want string) {
		t.Helper()
		y := "name: sw\nendpoint: /sw\ntasks:\n  a: {type: http, inputs: {address: http://a.local/}}\n  sw:\n    type: switch\n    inputs:\n" + inputs
		_, err := tryCompileRoute(y, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s\nerror %v, want %q", inputs, err, want)
		}
	}
	f("      default: [a]\n", "inputs.cases: give at least one case")
	f("      cases: [{run: [a]}]\n", "route.yaml:5:3: task \"sw\": inputs.cases[0].when is required")
	f("      cases: [{when: .request.a == yes, run: [a]}]\n", `route.yaml:8:22: task "sw": inputs.cases[0].when: at offset 14: expected a value`)
	f("      cases:\n        - when: .request.a\n        - when: '.tasks.b.body'\n", `inputs.cases[1].when: at offset 0: references unknown task "b"`)
	f("      cases: [{name: default, when: .request.a}]\n", `branch name "default" is taken`)
	f("      cases: [{name: x, when: .request.a}, {name: x, when: .request.b}]\n", `branch name "x" is taken`)
	f("      cases: [{name: case0, when: .request.a}, {when: .request.b}, {when: .request.c, name: case1}]\n", `branch name "case1" is taken`)
	f("      cases: [{name: 'a b', when: .request.a}]\n", `name "a b": use letters`)
	f("      cases: [{when: .request.a, run: a}]\n", "expected a list")
	f("      cases: [{when: .request.a, do: [a]}]\n", `unknown key "do"`)
}
