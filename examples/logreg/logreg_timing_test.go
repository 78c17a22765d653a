package logreg

import (
	"math"
	"testing"
)

func BenchmarkScore(b *testing.B) {
	x, y := synthetic(200, 1)
	a := &Artifact{Name: "m", Features: []string{"a", "b", "c"}}
	if err := Train(a, x, y, TrainOptions{Epochs: 50}); err != nil {
		b.Fatal(err)
	}
	row := []float64{3, 51, math.NaN()}
	b.ReportAllocs()
	var sink float64
	for b.Loop() {
		sink += a.Score(row)
	}
	if sink == 0 {
		b.Fatal("no scores")
	}
}
