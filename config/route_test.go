package config

import (
	"strings"
	"testing"
)

// TestAliasBomb feeds the classic exponential alias expansion: the loader
// must stop with an error instead of walking billions of values.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("name: bomb\nendpoint: /bomb\nx0: &x0 [a, a, a, a, a, a, a, a, a, a]\n")
	for i := 1; i < 10; i++ {
		b.WriteString("x" + string(rune('0'+i)) + ": &x" + string(rune('0'+i)) + " [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*x" + string(rune('0'+i-1)))
		}
		b.WriteString("]\n")
	}
	b.WriteString("tasks:\n  m:\n    type: http\n    inputs: {address: 'http://x/'}\n    on_error: {default: *x9}\n")
	_, err := Parse("bomb.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "once aliases are expanded") {
		t.Fatalf("error %v", err)
	}
}
