package training

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// stateStore keeps jobs and studies as JSON files under a state directory:
//
//	jobs/<id>.json      studies/<id>.json
//	logs/<id>.log       run/<id>.exit       artifacts/<id>/
//
// Files are replaced atomically (write, fsync, rename), so a crash leaves either
// the old or the new record.
type stateStore struct {
	dir string
}

func openStateStore(dir string) (*stateStore, error) {
	if dir == "" {
		return nil, fmt.Errorf("a state directory is required")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("cannot resolve state directory %q: %w", dir, err)
	}
	for _, sub := range []string{"jobs", "studies", "logs", "run", "artifacts"} {
		if err := os.MkdirAll(filepath.Join(abs, sub), 0o755); err != nil {
			return nil, fmt.Errorf("cannot create state directory: %w", err)
		}
	}
	return &stateStore{dir: abs}, nil
}

func (s *stateStore) path(kind, id string) string {
	return filepath.Join(s.dir, kind, id+".json")
}

// save writes v as kind/id.json atomically.
func (s *stateStore) save(kind, id string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("cannot encode %s %s: %w", kind, id, err)
	}
	return writeFileAtomic(s.path(kind, id), append(data, '\n'))
}

func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	return nil
}

// loadAll decodes every kind/*.json file with decode, in name order. Files that do
// not decode are reported through bad and skipped.
func (s *stateStore) loadAll(kind string, decode func(data []byte) error, bad func(path string, err error)) error {
	entries, err := os.ReadDir(filepath.Join(s.dir, kind))
	if err != nil {
		return fmt.Errorf("cannot list %s: %w", kind, err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".json") && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, name := range names {
		p := filepath.Join(s.dir, kind, name)
		data, err := os.ReadFile(p)
		if err == nil {
			err = decode(data)
		}
		if err != nil {
			bad(p, err)
		}
	}
	return nil
}
