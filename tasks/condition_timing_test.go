package tasks

import "testing"

func BenchmarkConditionEval(b *testing.B) {
	sc := &testScope{tasks: []string{"fraud"}}
	c, err := CompileCondition(`.request.country == "ID" && .tasks.fraud.body.score < 0.5 || .headers.X-Beta`, sc)
	if err != nil {
		b.Fatal(err)
	}
	x := newTestExchange(`{"user":{"id":"u-1"},"country":"ID","amount":12.5}`, map[string]string{"X-Beta": "1"}, sc, `{"score":0.4}`)
	b.ReportAllocs()
	for b.Loop() {
		if !c.Eval(x) {
			b.Fatal("false")
		}
	}
}
