package tasks

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

type testScope struct {
	tasks   []string
	headers []string
	request bool
}

func (s *testScope) TaskRef(name string) (int, error) {
	for i, n := range s.tasks {
		if n == name {
			return i, nil
		}
	}
	return 0, fmt.Errorf("references unknown task %q", name)
}

func (s *testScope) HeaderRef(name string) int {
	for i, h := range s.headers {
		if strings.EqualFold(h, name) {
			return i
		}
	}
	s.headers = append(s.headers, name)
	return len(s.headers) - 1
}

func (s *testScope) RequestRef() { s.request = true }

func newTestExchange(body string, headers map[string]string, sc *testScope, results ...string) *Exchange {
	x := &Exchange{}
	x.Reset(len(sc.tasks), len(sc.headers))
	x.Body = append(x.Body, body...)
	for i, h := range sc.headers {
		if v, ok := headers[h]; ok {
			x.SetHeader(i, []byte(v))
		}
	}
	for i, r := range results {
		x.Results[i].Body = []byte(r)
		x.Results[i].Status = 200
	}
	return x
}

func TestTemplateRendering(t *testing.T) {
	f := func(src string, mode Mode, want string) {
		t.Helper()
		sc := &testScope{tasks: []string{"fraud"}}
		tm, err := CompileTemplate(src, mode, sc)
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		x := newTestExchange(`{"user":{"id":"u 1","age":31,"tags":["a"]},"n":null}`,
			map[string]string{"X-Country": `I"D`}, sc, `{"score":0.25,"label":"ok"}`)
		if got := string(tm.Append(nil, x)); got != want {
			t.Fatalf("%q mode %d: got %s, want %s", src, mode, got, want)
		}
	}
	f(`{{ .request }}`, ModeJSON, `{"user":{"id":"u 1","age":31,"tags":["a"]},"n":null}`)
	f(`{"id": {{ .request.user.id }}, "age": {{.request.user.age}}}`, ModeJSON, `{"id": "u 1", "age": 31}`)
	f(`{{ .request.user.tags }} {{ .request.missing }} {{ .request.n }}`, ModeJSON, `["a"] null null`)
	f(`{{ .headers.X-Country }} {{ .headers.X-Absent }}`, ModeJSON, `"I\"D" null`)
	f(`{{ .tasks.fraud.body }}|{{ .tasks.fraud.body.score }}|{{ .tasks.fraud.status }}`, ModeJSON, `{"score":0.25,"label":"ok"}|0.25|200`)
	f(`id={{ .request.user.id }} c={{ .headers.X-Country }} l={{ .tasks.fraud.body.label }} a={{ .request.user.age }} x={{ .request.missing }}`, ModeText, `id=u 1 c=I"D l=ok a=31 x=`)
	f(`/u/{{ .request.user.id }}?c={{ .headers.X-Country }}`, ModeURL, `/u/u%201?c=I%22D`)
	f(`no templates at all`, ModeJSON, `no templates at all`)
	f(`}} stray closers {`, ModeText, `}} stray closers {`)
}

func TestTemplateErrors(t *testing.T) {
	f := func(src, want string) {
		t.Helper()
		_, err := CompileTemplate(src, ModeJSON, &testScope{tasks: []string{"a"}})
		if err == nil || err.Error() != want {
			t.Fatalf("%q: error %v, want %s", src, err, want)
		}
	}
	f(`{{ .request`, `unclosed {{ at offset 0`)
	f(`{{ }}`, `empty {{ }}: use .request, .request.<path>, .headers.<Name>, .tasks.<task>.body[.<path>], .tasks.<task>.status or .tasks.<task>.missing`)
	f(`{{ request }}`, `unsupported template expression "request": use .request, .request.<path>, .headers.<Name>, .tasks.<task>.body[.<path>], .tasks.<task>.status or .tasks.<task>.missing`)
	f(`{{ .request | upper }}`, `unsupported template expression ".request | upper": use .request, .request.<path>, .headers.<Name>, .tasks.<task>.body[.<path>], .tasks.<task>.status or .tasks.<task>.missing`)
	f(`{{ .request.a..b }}`, `template expression ".request.a..b": invalid path "a..b"`)
	f(`{{ .tasks.b.body }}`, `references unknown task "b"`)
	f(`{{ .tasks.a }}`, `template expression ".tasks.a": a task reference ends in .body, .body.<path>, .status or .missing`)
	f(`{{ .headers }}`, `template expression ".headers": name one header, as .headers.X-Name`)
	f(`{{ .env.HOME }}`, `unknown template value ".env.HOME": use .request, .request.<path>, .headers.<Name>, .tasks.<task>.body[.<path>], .tasks.<task>.status or .tasks.<task>.missing`)
}

func TestTemplateRenderAllocs(t *testing.T) {
	sc := &testScope{tasks: []string{"f"}}
	tm, err := CompileTemplate(`{"u": {{ .request.user.id }}, "f": {{ .tasks.f.body.score }}, "h": {{ .headers.X-A }}}`, ModeJSON, sc)
	if err != nil {
		t.Fatal(err)
	}
	x := newTestExchange(`{"user":{"id":"u1"}}`, map[string]string{"X-A": "v"}, sc, `{"score":1}`)
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { buf = tm.Append(buf[:0], x) }); n != 0 {
		t.Fatalf("rendering allocates %.0f times, want 0", n)
	}
	addr, err := CompileTemplate(`/u/{{ .request.user.id }}/s?f={{ .tasks.f.body.score }}`, ModeURL, sc)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { buf, _ = addr.AppendURL(buf[:0], x) }); n != 0 {
		t.Fatalf("rendering an address allocates %.0f times, want 0", n)
	}
	hdr, err := CompileTemplate(`v={{ .headers.X-A }} {{ .request.user.id }}`, ModeText, sc)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { buf, _ = hdr.AppendText(buf[:0], x) }); n != 0 {
		t.Fatalf("rendering a header allocates %.0f times, want 0", n)
	}
}

func TestAppendURL(t *testing.T) {
	f := func(src, body, want, wantErr string) {
		t.Helper()
		sc := &testScope{tasks: []string{"t"}}
		tm, err := CompileTemplate(src, ModeURL, sc)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tm.AppendURL(nil, newTestExchange(body, nil, sc, `{"s":".."}`))
		switch {
		case wantErr == "" && (err != nil || string(got) != want):
			t.Fatalf("%s %s: %q %v, want %q", src, body, got, err, want)
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Fatalf("%s %s: error %v, want %q", src, body, err, wantErr)
		}
	}
	f(`/m/{{ .request.m }}/p?q={{ .request.q }}`, `{"m":"a.b","q":"/.?#"}`, `/m/a.b/p?q=%2F.%3F%23`, "")
	f(`/m/{{ .request.m }}`, `{"m":"a%41"}`, `/m/a%2541`, "")
	f(`/m/{{ .request.m }}`, `{"m":".."}`, "", `makes the path segment ".."`)
	f(`/m/{{ .request.m }}`, `{"m":"."}`, "", `makes the path segment "."`)
	f(`/m/{{ .request.m }}{{ .request.m }}`, `{"m":"."}`, "", `makes the path segment ".."`)
	f(`/m/%2E{{ .request.m }}/x`, `{"m":"."}`, "", `makes the path segment "%2E."`)
	f(`/m/{{ .request.m }}`, `{"m":"a/b"}`, "", `holds "/"`)
	f(`/m/{{ .request.m }}`, `{"m":"%2e"}`, "", `holds "%2e"`)
	f(`/m/x{{ .request.m }}`, `{"m":"."}`, `/m/x.`, "")
	f(`/m/./{{ .request.m }}`, `{"m":"a"}`, `/m/./a`, "")
	f(`/m?{{ .request.m }}`, `{"m":".."}`, `/m?..`, "")
	f(`/m/{{ .tasks.t.body.s }}`, `{}`, "", `{{ .tasks.t.body.s }} makes`)
	var re *RequestError
	sc := &testScope{tasks: []string{"t"}}
	tm, _ := CompileTemplate(`/m/{{ .tasks.t.body.s }}`, ModeURL, sc)
	if _, err := tm.AppendURL(nil, newTestExchange(`{}`, nil, sc, `{"s":".."}`)); errors.As(err, &re) {
		t.Fatalf("a value from a task's answer is not a request error: %v", err)
	}
}

// FuzzCompileTemplate compiles and renders arbitrary templates against an
// arbitrary request: errors are fine, panics are not.
func FuzzCompileTemplate(f *testing.F) {
	f.Add(`{"a": {{ .request.a }}}`, `{"a":1}`)
	f.Add(`{{ .tasks.t.body.x }} {{ .headers.X }}`, `not json`)
	f.Add(`{{{{ .request }}}}`, `[]`)
	f.Add(`/p/{{ .request.#(a>1).b }}`, `[{"a":2,"b":"c"}]`)
	f.Fuzz(func(t *testing.T, src, body string) {
		sc := &testScope{tasks: []string{"t"}}
		for _, mode := range []Mode{ModeJSON, ModeText, ModeURL} {
			tm, err := CompileTemplate(src, mode, sc)
			if err != nil {
				continue
			}
			x := newTestExchange(body, map[string]string{"X": body}, sc, body)
			_ = tm.Append(nil, x)
			switch mode {
			case ModeText:
				_, _ = tm.AppendText(nil, x)
			case ModeURL:
				_, _ = tm.AppendURL(nil, x)
			}
		}
	})
}
