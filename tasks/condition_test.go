package tasks

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestConditionEval(t *testing.T) {
	const body = `{"country":"ID","age":31,"tier":0,"name":"","beta":true,"off":false,"nil":null,"tags":["a"],"n":"31"}`
	f := func(src string, want bool) {
		t.Helper()
		sc := &testScope{tasks: []string{"fraud", "skipped"}}
		c, err := CompileCondition(src, sc)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		x := newTestExchange(body, map[string]string{"X-Beta": "1", "X-Score": " 0.75 ", "X-Empty": ""}, sc, `{"score":0.4,"flags":{"vpn":true}}`)
		if got := c.Eval(x); got != want {
			t.Errorf("%s = %v, want %v", src, got, want)
		}
	}
	// Comparisons by type.
	f(`.request.country == "ID"`, true)
	f(`.request.country != "ID"`, false)
	f(`.request.country == "id"`, false)
	f(`.request.age >= 31`, true)
	f(`.request.age > 31`, false)
	f(`.request.age < 40.5`, true)
	f(`.request.age <= -1`, false)
	f(`.request.n == 31`, false) // a JSON string is not a number
	f(`.request.n != 31`, true)
	f(`.request.country < "JP"`, true)
	f(`.request.age == "31"`, false)
	f(`.request.beta == true`, true)
	f(`.request.off == false`, true)
	f(`.request.off != true`, true)
	f(`.request.nil == null`, true)
	f(`.request.missing == null`, true)
	f(`.request.age == null`, false)
	f(`.request.missing != null`, false)
	f(`.request.missing > 1`, false)
	f(`.request.missing != 1`, true)
	f(`.request.tags.0 == "a"`, true)
	f(`.request.tags.# == 1`, true)
	// Truthiness.
	f(`.request.country`, true)
	f(`.request.tier`, false)
	f(`.request.name`, false)
	f(`.request.off`, false)
	f(`.request.nil`, false)
	f(`.request.missing`, false)
	f(`.request.tags`, true)
	f(`.request`, true)
	// Headers are text, read as numbers when compared with one.
	f(`.headers.X-Beta`, true)
	f(`.headers.X-Empty`, false)
	f(`.headers.X-None`, false)
	f(`.headers.X-Beta == "1"`, true)
	f(`.headers.X-Beta == 1`, true)
	f(`.headers.X-Score > 0.5`, true)
	f(`.headers.X-None == null`, true)
	f(`.headers.X-Beta > "0"`, true)
	// Task results.
	f(`.tasks.fraud.body.score < 0.5`, true)
	f(`.tasks.fraud.body.flags.vpn`, true)
	f(`.tasks.fraud.status == 200`, true)
	f(`.tasks.skipped.status == 0`, true)
	f(`.tasks.skipped.body.score`, false)
	// Precedence and grouping.
	f(`.request.off || .request.beta && .request.age > 30`, true)
	f(`(.request.off || .request.beta) && .request.age > 40`, false)
	f(`.request.off || .request.nil || .request.tier`, false)
	f(`((.request.beta))`, true)
	f(`.request.country=="ID"&&.request.age>30`, true)
	f("  .request.beta \n && .request.country != \"MY\" ", true)
	f(`.request.country == "I\"D"`, false)
}

func TestConditionErrors(t *testing.T) {
	f := func(src, want string) {
		t.Helper()
		_, err := CompileCondition(src, &testScope{tasks: []string{"fraud"}})
		if err == nil || err.Error() != want {
			t.Errorf("%q: error %v, want %q", src, err, want)
		}
	}
	f(``, `empty condition: write e.g. .request.country == "ID"`)
	f(`country == "ID"`, `at offset 0: expected a reference such as .request.<path>, .headers.<Name> or .tasks.<task>.body.<path>, found "country == \"ID\""`)
	f(`.request.a = 1`, `at offset 11: unknown operator "=": use ==, !=, <, <=, > or >=`)
	f(`.request.a =< 1`, `at offset 11: unknown operator "=<": use ==, !=, <, <=, > or >=`)
	f(`.request.a == 'x'`, `at offset 14: strings take double quotes: "..."`)
	f(`.request.a == "x`, `at offset 14: unclosed string`)
	f(`.request.a ==`, `at offset 13: expected a value (a number, a "string", true, false or null), found the end`)
	f(`.request.a == yes`, `at offset 14: expected a value (a number, a "string", true, false or null), found "yes"`)
	f(`.request.a == 1.2.3`, `at offset 14: expected a value (a number, a "string", true, false or null), found "1.2.3"`)
	f(`.request.a < true`, `at offset 17: < compares numbers or strings, not true`)
	f(`.request.a >= null`, `at offset 18: >= compares numbers or strings, not null`)
	f(`.request.a == 1 .request.b`, `at offset 16: unexpected ".request.b": expected && or || or the end`)
	f(`(.request.a`, `at offset 11: expected ), found end of condition`)
	f(`.request.a &&`, `at offset 13: expected a reference such as .request.<path>, .headers.<Name> or .tasks.<task>.body.<path>, found end of condition`)
	f(`.tasks.nope.body`, `at offset 0: references unknown task "nope"`)
	f(`.tasks.fraud.score`, `at offset 0: template expression ".tasks.fraud.score": a task reference ends in .body, .body.<path>, .status or .missing`)
	f(`.user.id`, `at offset 0: unknown template value ".user.id": use .request, .request.<path>, .headers.<Name>, .tasks.<task>.body[.<path>], .tasks.<task>.status or .tasks.<task>.missing`)
	f(strings.Repeat("(", 40)+".request.a"+strings.Repeat(")", 40), `at offset 33: parentheses nested too deeply`)
}

func TestConditionDependencies(t *testing.T) {
	sc := &testScope{tasks: []string{"fraud", "rank"}}
	rec := &recordingScope{testScope: sc}
	if _, err := CompileCondition(`.tasks.rank.status == 200 || .headers.X-A && .request.a`, rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.tasks) != 1 || rec.tasks[0] != "rank" || !sc.request || len(sc.headers) != 1 {
		t.Fatalf("tasks %v request %v headers %v", rec.tasks, sc.request, sc.headers)
	}
}

type recordingScope struct {
	*testScope
	tasks []string
}

func (s *recordingScope) TaskRef(name string) (int, error) {
	s.tasks = append(s.tasks, name)
	return s.testScope.TaskRef(name)
}

// FuzzCondition compiles arbitrary conditions and evaluates those that
// compile: neither may panic. Precondition: the request body is valid
// JSON, as the gateway answers 400 to any other body before a task runs.
func FuzzCondition(f *testing.F) {
	for _, s := range []string{
		`.request.country == "ID" && .tasks.fraud.body.score < 0.5`,
		`(.headers.X-Beta || .request.tier >= 3) && .tasks.fraud.status != 500`,
		`.request.a == null || .request.b != "x\"y"`,
		`((.request`, `.request.a ==`, `.request.a == 1e400`,
	} {
		f.Add(s, `{"country":"ID","tier":3,"a":null}`)
	}
	f.Fuzz(func(t *testing.T, src, body string) {
		if !json.Valid([]byte(body)) {
			t.Skip("not JSON: the gateway rejects it with 400 before any task runs")
		}
		sc := &testScope{tasks: []string{"fraud"}}
		c, err := CompileCondition(src, sc)
		if err != nil {
			return
		}
		x := newTestExchange(body, map[string]string{"X-Beta": "1"}, sc, `{"score":0.4}`)
		c.Eval(x)
	})
}
