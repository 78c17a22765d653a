package schemagen

import (
	"fmt"
	"go/ast"
	"go/doc/comment"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strings"
)

// docs reads the doc comments of Go types and their fields from the
// source files of the module, found from the working directory.
type docs struct {
	root   string // the module's directory
	module string // the module path
	pkgs   map[string]map[string]*typeDoc
}

// typeDoc is the doc comment of a type and of its struct fields.
type typeDoc struct {
	doc    string
	fields map[string]string
}

func newDocs() (*docs, error) {
	dir, err := os.Getwd()
	if err != nil {
		return nil, fmt.Errorf("cannot find the module: %w", err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			for _, line := range strings.Split(string(data), "\n") {
				if mod, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
					return &docs{root: dir, module: strings.TrimSpace(mod), pkgs: map[string]map[string]*typeDoc{}}, nil
				}
			}
			return nil, fmt.Errorf("%s has no module line", filepath.Join(dir, "go.mod"))
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil, fmt.Errorf("cannot find go.mod above the working directory")
		}
		dir = parent
	}
}

// of returns the doc comments of named type t, which must be declared in
// the module (in a test file too, for kinds that tests define).
func (d *docs) of(t reflect.Type) (*typeDoc, error) {
	if t.Name() == "" {
		return nil, fmt.Errorf("type %s has no name: only named types have doc comments", t)
	}
	pkg := t.PkgPath()
	types, ok := d.pkgs[pkg]
	if !ok {
		var err error
		if types, err = d.parse(pkg); err != nil {
			return nil, err
		}
		d.pkgs[pkg] = types
	}
	td, ok := types[t.Name()]
	if !ok {
		return nil, fmt.Errorf("type %s: no declaration found in the sources of %s", t, pkg)
	}
	return td, nil
}

// parse reads the type declarations of package pkg.
func (d *docs) parse(pkg string) (map[string]*typeDoc, error) {
	rel, ok := strings.CutPrefix(pkg, d.module)
	if !ok || rel != "" && rel[0] != '/' {
		return nil, fmt.Errorf("package %s is outside module %s", pkg, d.module)
	}
	// The external test package of a directory is named after it.
	rel, xtest := strings.CutSuffix(rel, "_test")
	dir := filepath.Join(d.root, filepath.FromSlash(rel))
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cannot read the sources of %s: %w", pkg, err)
	}
	types := map[string]*typeDoc{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return nil, fmt.Errorf("cannot parse %s: %w", e.Name(), err)
		}
		if strings.HasSuffix(f.Name.Name, "_test") != xtest {
			continue
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				cg := ts.Doc
				if cg == nil && len(gd.Specs) == 1 {
					cg = gd.Doc
				}
				td := &typeDoc{doc: cg.Text(), fields: map[string]string{}}
				if st, ok := ts.Type.(*ast.StructType); ok {
					for _, fl := range st.Fields.List {
						text := fl.Doc.Text()
						if text == "" {
							text = fl.Comment.Text()
						}
						for _, n := range fl.Names {
							td.fields[n.Name] = text
						}
						if len(fl.Names) == 0 {
							td.fields[embeddedName(fl.Type)] = text
						}
					}
				}
				types[ts.Name.Name] = td
			}
		}
	}
	return types, nil
}

func embeddedName(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.StarExpr:
		return embeddedName(e.X)
	case *ast.SelectorExpr:
		return e.Sel.Name
	case *ast.Ident:
		return e.Name
	}
	return ""
}

// describe turns a doc comment into a schema description: its first
// paragraph as one line of plain text (doc links lose their brackets).
// Later paragraphs are for Go readers only.
func describe(text string) string {
	text = strings.TrimSpace(text)
	if i := strings.Index(text, "\n\n"); i >= 0 {
		text = text[:i]
	}
	var p comment.Parser
	pr := comment.Printer{TextWidth: -1}
	return strings.TrimSpace(string(pr.Text(p.Parse(text))))
}
