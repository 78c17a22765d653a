package featurefetch

import (
	"context"
	"sync"
	"time"
)

// HashRead is one HMGET: the given fields of the hash at Key.
type HashRead struct {
	Key    string
	Fields []string
}

// FieldValue is one field read by a Store. Found is false when the key or the
// field does not exist.
type FieldValue struct {
	Data  string
	Found bool
}

// Store reads Feast-layout hashes.
type Store interface {
	// ReadHashes performs every read in one round trip to the store and appends
	// the value of each field of each read, in order, to dst.
	// cacheTTL > 0 allows serving the reads from a client-side cache kept
	// coherent by the server (ignored by stores without one).
	// The returned Data strings must be treated as read-only.
	ReadHashes(ctx context.Context, reads []HashRead, cacheTTL time.Duration, dst []FieldValue) ([]FieldValue, error)
}

// KeyError reports a read the store refused for what its key holds (a
// value that is not a hash, written there by another program): the store
// is up, one entity's row is unreadable.
type KeyError struct {
	// Read is the index of the refused read.
	Read int
	// Entity, when set, names the entity and views of the read (JSON).
	Entity string
	Err    error
}

func (e *KeyError) Error() string {
	if e.Entity == "" {
		return "the key of a feature row holds a value that is not a hash: " + e.Err.Error()
	}
	return "the key of the feature row of " + e.Entity + " holds a value that is not a hash: " + e.Err.Error()
}

func (e *KeyError) Unwrap() error { return e.Err }

// RowWriter writes hash fields; both stores implement it, so seed data can be
// loaded into either.
type RowWriter interface {
	// HSet sets field/value pairs (fieldValues alternates field, value) of the hash at key.
	HSet(ctx context.Context, key string, fieldValues ...string) error
}

// MemoryStore is an in-process Store holding the same byte layout as Redis.
// It lets the gateway run without Redis (demo, tests). Safe for concurrent use.
type MemoryStore struct {
	mu     sync.RWMutex
	hashes map[string]map[string]string
}

var (
	_ Store     = (*MemoryStore)(nil)
	_ RowWriter = (*MemoryStore)(nil)
)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{hashes: make(map[string]map[string]string)}
}

// ReadHashes implements Store.
func (s *MemoryStore) ReadHashes(ctx context.Context, reads []HashRead, _ time.Duration, dst []FieldValue) ([]FieldValue, error) {
	if err := ctx.Err(); err != nil {
		return dst, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i := range reads {
		h := s.hashes[reads[i].Key]
		for _, f := range reads[i].Fields {
			v, ok := h[f]
			dst = append(dst, FieldValue{Data: v, Found: ok})
		}
	}
	return dst, nil
}

// HSet implements RowWriter. An odd number of fieldValues drops the last one.
func (s *MemoryStore) HSet(_ context.Context, key string, fieldValues ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.hashes[key]
	if h == nil {
		h = make(map[string]string, len(fieldValues)/2)
		s.hashes[key] = h
	}
	for i := 0; i+1 < len(fieldValues); i += 2 {
		h[fieldValues[i]] = fieldValues[i+1]
	}
	return nil
}

// HGet returns one field of the hash at key.
func (s *MemoryStore) HGet(key, field string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.hashes[key][field]
	return v, ok
}

// Del removes the hash at key.
func (s *MemoryStore) Del(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.hashes, key)
}

// Len returns the number of hashes.
func (s *MemoryStore) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.hashes)
}
