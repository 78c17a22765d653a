package router

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/tasks"
)

// FuzzLoadRoute feeds arbitrary bytes to the route loader and compiler: they
// must return a route or positioned errors, never panic.
func FuzzLoadRoute(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.yaml")
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("name: x\nendpoint: /x\ntasks: {a: {type: http, inputs: {address: 'http://h/{{ .request.a }}'}, output: {path: response.body.a, write: append}}}"))
	f.Add([]byte("a: &x {b: *x}\n<<: *x"))
	env := tasks.NewEnv(nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := config.Parse("fuzz.yaml", data)
		if err != nil {
			if _, ok := err.(config.Errors); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if _, err := Compile(r, env); err != nil {
			if _, ok := err.(config.Errors); !ok {
				t.Fatalf("compile error of type %T: %v", err, err)
			}
		}
	})
}
