package tasks

import (
	"testing"
)

// BenchmarkInferCodec renders the V2 request of 20 feature rows (two
// columns, from another task's result) and maps a 20-row answer back,
// without a network call: the per-request work of an infer task.
func BenchmarkInferCodec(b *testing.B) {
	c := compileRoute(b, inferRoute("http://m.local:8000", `
      outputs: [scores]
      rows: true
      inputs: [{name: x, datatype: FP32, shape: [-1, 2], from: '{{ .tasks.features.body }}', columns: [conv_rate, acc_rate]}]`), nil)
	t := c.tasks["rank"].(*inferTask)
	rows := "["
	answer := `{"model_name":"ranker","outputs":[{"name":"scores","datatype":"FP32","shape":[20,1],"data":[`
	for i := 0; i < 20; i++ {
		if i > 0 {
			rows += ","
			answer += ","
		}
		rows += `{"driver_id":1001,"conv_rate":0.5,"acc_rate":0.25,"avg_daily_trips":12}`
		answer += "0.9132"
	}
	rows += "]"
	answer += `]}]}`
	x := c.exchange(`{}`, map[string]string{"features": rows}, nil)
	body := []byte(answer)
	var req, res []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if req, err = t.appendV2Body(req[:0], x); err != nil {
			b.Fatal(err)
		}
		if res, err = t.codec.decode(res[:0], body); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(req)), "req-bytes")
}
