package server

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/lariat-gw/lariat/registry"
	bolt "go.etcd.io/bbolt"
)

// Bucket layout of the embedded store:
//
//	models/<name>             -> JSON ModelRecord
//	versions/<name>/<uint64>  -> JSON ModelVersion (big-endian version number as key)
//	runs/<run id>             -> JSON RunRecord
var (
	bucketModels   = []byte("models")
	bucketVersions = []byte("versions")
	bucketRuns     = []byte("runs")
)

// BoltStore is the embedded on-disk Store on bbolt. Every Update is one bbolt write
// transaction, fsynced before it returns, so an acknowledged write survives a crash;
// bbolt runs one writer at a time, which serializes all writers.
type BoltStore struct {
	db *bolt.DB
}

var _ Store = (*BoltStore)(nil)

// OpenBoltStore opens (creating if needed) the bbolt file at path. It fails after a
// few seconds when another process holds the file.
func OpenBoltStore(path string) (*BoltStore, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("cannot create directory for registry store %q: %w", path, err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("cannot open registry store %q: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketModels, bucketVersions, bucketRuns} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("cannot initialize registry store %q: %w", path, err)
	}
	return &BoltStore{db: db}, nil
}

// View implements Store.
func (s *BoltStore) View(ctx context.Context, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

// Update implements Store.
func (s *BoltStore) Update(ctx context.Context, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

// Close implements Store.
func (s *BoltStore) Close() error {
	return s.db.Close()
}

// check runs bbolt's consistency check; tests use it after a crash.
func (s *BoltStore) check() error {
	return s.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
}

type boltTx struct {
	tx *bolt.Tx
}

func versionKey(v int64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], uint64(v))
	return k[:]
}

func (t boltTx) Model(name string) (*ModelRecord, error) {
	data := t.tx.Bucket(bucketModels).Get([]byte(name))
	if data == nil {
		return nil, ErrNotFound
	}
	var m ModelRecord
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("cannot decode stored model %q: %w", name, err)
	}
	return &m, nil
}

func (t boltTx) putModel(m *ModelRecord) error {
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("cannot encode model %q: %w", m.Name, err)
	}
	return t.tx.Bucket(bucketModels).Put([]byte(m.Name), data)
}

func (t boltTx) InsertModel(m *ModelRecord) error {
	if t.tx.Bucket(bucketModels).Get([]byte(m.Name)) != nil {
		return ErrAlreadyExists
	}
	return t.putModel(m)
}

func (t boltTx) PutModel(m *ModelRecord) error {
	if t.tx.Bucket(bucketModels).Get([]byte(m.Name)) == nil {
		return ErrNotFound
	}
	return t.putModel(m)
}

func (t boltTx) RenameModel(oldName, newName string) error {
	m, err := t.Model(oldName)
	if err != nil {
		return err
	}
	models := t.tx.Bucket(bucketModels)
	if models.Get([]byte(newName)) != nil {
		return ErrAlreadyExists
	}
	m.Name = newName
	if err := t.putModel(m); err != nil {
		return err
	}
	if err := models.Delete([]byte(oldName)); err != nil {
		return err
	}
	versions := t.tx.Bucket(bucketVersions)
	old := versions.Bucket([]byte(oldName))
	if old == nil {
		return nil
	}
	nb, err := versions.CreateBucket([]byte(newName))
	if err != nil {
		return fmt.Errorf("cannot create versions bucket for %q: %w", newName, err)
	}
	err = old.ForEach(func(k, data []byte) error {
		var v registry.ModelVersion
		if err := json.Unmarshal(data, &v); err != nil {
			return fmt.Errorf("cannot decode stored version of %q: %w", oldName, err)
		}
		v.Name = newName
		enc, err := json.Marshal(&v)
		if err != nil {
			return err
		}
		return nb.Put(k, enc)
	})
	if err != nil {
		return err
	}
	return versions.DeleteBucket([]byte(oldName))
}

func (t boltTx) DeleteModel(name string) error {
	models := t.tx.Bucket(bucketModels)
	if models.Get([]byte(name)) == nil {
		return ErrNotFound
	}
	if err := models.Delete([]byte(name)); err != nil {
		return err
	}
	versions := t.tx.Bucket(bucketVersions)
	if versions.Bucket([]byte(name)) != nil {
		return versions.DeleteBucket([]byte(name))
	}
	return nil
}

func (t boltTx) ScanModels(fn func(*ModelRecord) error) error {
	return t.tx.Bucket(bucketModels).ForEach(func(k, data []byte) error {
		var m ModelRecord
		if err := json.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("cannot decode stored model %q: %w", k, err)
		}
		return fn(&m)
	})
}

func (t boltTx) Version(name string, version int64) (*registry.ModelVersion, error) {
	b := t.tx.Bucket(bucketVersions).Bucket([]byte(name))
	if b == nil {
		return nil, ErrNotFound
	}
	data := b.Get(versionKey(version))
	if data == nil {
		return nil, ErrNotFound
	}
	var v registry.ModelVersion
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("cannot decode stored version %d of %q: %w", version, name, err)
	}
	return &v, nil
}

func (t boltTx) PutVersion(v *registry.ModelVersion) error {
	n, err := parseVersion(v.Version)
	if err != nil {
		return fmt.Errorf("BUG: storing version %q of %q: %w", v.Version, v.Name, err)
	}
	b, err := t.tx.Bucket(bucketVersions).CreateBucketIfNotExists([]byte(v.Name))
	if err != nil {
		return fmt.Errorf("cannot create versions bucket for %q: %w", v.Name, err)
	}
	stored := *v
	stored.Aliases = nil
	data, err := json.Marshal(&stored)
	if err != nil {
		return fmt.Errorf("cannot encode version %s of %q: %w", v.Version, v.Name, err)
	}
	return b.Put(versionKey(n), data)
}

func (t boltTx) DeleteVersion(name string, version int64) error {
	b := t.tx.Bucket(bucketVersions).Bucket([]byte(name))
	if b == nil || b.Get(versionKey(version)) == nil {
		return ErrNotFound
	}
	return b.Delete(versionKey(version))
}

func (t boltTx) ScanVersions(name string, fn func(*registry.ModelVersion) error) error {
	versions := t.tx.Bucket(bucketVersions)
	scan := func(model []byte) error {
		b := versions.Bucket(model)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, data []byte) error {
			var v registry.ModelVersion
			if err := json.Unmarshal(data, &v); err != nil {
				return fmt.Errorf("cannot decode stored version of %q: %w", model, err)
			}
			return fn(&v)
		})
	}
	if name != "" {
		return scan([]byte(name))
	}
	return versions.ForEachBucket(scan)
}

func (t boltTx) Run(id string) (*registry.RunRecord, error) {
	data := t.tx.Bucket(bucketRuns).Get([]byte(id))
	if data == nil {
		return nil, ErrNotFound
	}
	var r registry.RunRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("cannot decode stored run %q: %w", id, err)
	}
	return &r, nil
}

func (t boltTx) PutRun(r *registry.RunRecord) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("cannot encode run %q: %w", r.RunID, err)
	}
	return t.tx.Bucket(bucketRuns).Put([]byte(r.RunID), data)
}

func (t boltTx) ScanRuns(fn func(*registry.RunRecord) error) error {
	return t.tx.Bucket(bucketRuns).ForEach(func(k, data []byte) error {
		var r registry.RunRecord
		if err := json.Unmarshal(data, &r); err != nil {
			return fmt.Errorf("cannot decode stored run %q: %w", k, err)
		}
		return fn(&r)
	})
}
