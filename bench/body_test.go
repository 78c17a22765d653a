package bench_test

import (
	"bytes"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/lariat-gw/lariat/bench"
)

func TestTemplate(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	f := func(tmpl string, seq uint64, want string) {
		t.Helper()
		tp, err := bench.ParseTemplate(tmpl)
		if err != nil {
			t.Fatalf("ParseTemplate(%q): %s", tmpl, err)
		}
		if got := string(tp.Append(nil, seq, rng)); got != want {
			t.Fatalf("%q with seq %d = %q, want %q", tmpl, seq, got, want)
		}
	}
	f(``, 0, ``)
	f(`{"a":1}`, 7, `{"a":1}`)
	f(`{"id":{{seq}}}`, 42, `{"id":42}`)
	f(`{{seq}}{{ seq }}`, 3, `33`)
	f(`{"n":{{rand 5 5}}}`, 0, `{"n":5}`)
	f(`{"n":{{rand -3 -3}}}`, 0, `{"n":-3}`)
	f(`{"a":{"b":1}}`, 0, `{"a":{"b":1}}`) // "}}" alone is literal

	// rand covers its range and stays inside it.
	tp, err := bench.ParseTemplate(`{{rand 1 5}}`)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for i := range 500 {
		n, err := strconv.Atoi(string(tp.Append(nil, uint64(i), rng)))
		if err != nil || n < 1 || n > 5 {
			t.Fatalf("rand 1 5 gave %d, %v", n, err)
		}
		seen[n] = true
	}
	if len(seen) != 5 {
		t.Fatalf("rand 1 5 gave only %v", seen)
	}

	// Rendering does not allocate once the buffer is large enough.
	buf := make([]byte, 0, 64)
	tp, _ = bench.ParseTemplate(`{"id":{{seq}},"n":{{rand 1 50}}}`)
	if n := testing.AllocsPerRun(100, func() { buf = tp.Append(buf[:0], 123456, rng) }); n != 0 {
		t.Fatalf("Append allocates %v times", n)
	}
}

func TestTemplateErrors(t *testing.T) {
	f := func(tmpl, want string) {
		t.Helper()
		_, err := bench.ParseTemplate(tmpl)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("ParseTemplate(%q) error %v, want %q", tmpl, err, want)
		}
	}
	f(`{"a":{{seq}`, "unclosed placeholder at offset 5")
	f(`{{user}}`, "unknown placeholder {{user}}")
	f(`{{seq 1}}`, "unknown placeholder")
	f(`{{rand 1}}`, "unknown placeholder")
	f(`{{rand a 2}}`, "bounds must be integers")
	f(`{{rand 5 1}}`, "lower bound is above upper bound")
}

func TestReadBodies(t *testing.T) {
	got, err := bench.ReadBodies(strings.NewReader("{\"a\":1}\r\n\n  [1,2]  \n\"s\""))
	if err != nil {
		t.Fatal(err)
	}
	want := [][]byte{[]byte(`{"a":1}`), []byte(`[1,2]`), []byte(`"s"`)}
	if len(got) != len(want) {
		t.Fatalf("got %q", got)
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("body %d = %q, want %q", i, got[i], want[i])
		}
	}

	f := func(in, want string) {
		t.Helper()
		_, err := bench.ReadBodies(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("ReadBodies(%q) error %v, want %q", in, err, want)
		}
	}
	f("", "no bodies found")
	f("\n \n", "no bodies found")
	f("{\"a\":1}\n{\"a\":\n", "bodies line 2 is not valid JSON")

	if _, err := bench.LoadBodies("testdata/missing.jsonl"); err == nil || !strings.Contains(err.Error(), "cannot open bodies file") {
		t.Fatalf("LoadBodies on a missing file: %v", err)
	}
}
