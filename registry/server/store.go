package server

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/lariat-gw/lariat/registry"
)

// Store errors returned by Tx methods. The Service turns them into API errors.
var (
	// ErrNotFound means the model or version does not exist.
	ErrNotFound = errors.New("registry: not found")
	// ErrAlreadyExists means a model with that name already exists.
	ErrAlreadyExists = errors.New("registry: already exists")
)

// Store keeps registry records durably.
//
// Update runs fn in a read-write transaction that commits as a whole or not at all.
// A store may run fn more than once when it retries a transaction that lost a
// conflict, so fn must not have effects outside tx. View runs fn on a consistent
// read-only snapshot.
type Store interface {
	View(ctx context.Context, fn func(Tx) error) error
	Update(ctx context.Context, fn func(Tx) error) error
	Close() error
}

// Tx is record-level access inside a transaction.
//
// In an Update transaction, Model also locks the model's record against other writers
// until the transaction ends: every change to a model, its tags, aliases or versions
// reads the model first, which serializes writers of one model and keeps version
// numbers contiguous.
type Tx interface {
	// Model returns the model record or ErrNotFound.
	Model(name string) (*ModelRecord, error)
	// InsertModel adds a new model or returns ErrAlreadyExists.
	InsertModel(m *ModelRecord) error
	// PutModel overwrites an existing model record.
	PutModel(m *ModelRecord) error
	// RenameModel renames a model and its versions; ErrAlreadyExists when newName is taken.
	RenameModel(oldName, newName string) error
	// DeleteModel removes a model and all its versions.
	DeleteModel(name string) error
	// ScanModels calls fn for every model. fn may not call other Tx methods.
	ScanModels(fn func(m *ModelRecord) error) error
	// Version returns a model version or ErrNotFound.
	Version(name string, version int64) (*registry.ModelVersion, error)
	// PutVersion inserts or overwrites a model version; v.Aliases is not stored.
	PutVersion(v *registry.ModelVersion) error
	// DeleteVersion removes a model version.
	DeleteVersion(name string, version int64) error
	// ScanVersions calls fn for every version of the named model, or of all models
	// when name is empty, in increasing version order per model. fn may not call
	// other Tx methods.
	ScanVersions(name string, fn func(v *registry.ModelVersion) error) error
	// Run returns a training run or ErrNotFound.
	Run(id string) (*registry.RunRecord, error)
	// PutRun inserts or overwrites a training run.
	PutRun(r *registry.RunRecord) error
	// ScanRuns calls fn for every run, in run id order. fn may not call other
	// Tx methods.
	ScanRuns(fn func(r *registry.RunRecord) error) error
}

// OpenStore opens the store a spec names: "bolt:/path/registry.db" for the embedded
// store, "postgres://..." or "postgresql://..." for PostgreSQL.
func OpenStore(ctx context.Context, spec string) (Store, error) {
	switch {
	case strings.HasPrefix(spec, "bolt:"):
		path := strings.TrimPrefix(spec, "bolt:")
		if path == "" {
			return nil, fmt.Errorf("store %q: missing file path after bolt:", spec)
		}
		return OpenBoltStore(path)
	case strings.HasPrefix(spec, "postgres://"), strings.HasPrefix(spec, "postgresql://"):
		return OpenPostgresStore(ctx, spec)
	}
	return nil, fmt.Errorf("unsupported store %q: want bolt:/path/registry.db or postgres://...", redactDSN(spec))
}

// redactDSN hides a password in a connection string before it goes into an error.
func redactDSN(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	userinfo, host, ok := strings.Cut(rest, "@")
	if !ok {
		return s
	}
	if user, _, hasPass := strings.Cut(userinfo, ":"); hasPass {
		return scheme + "://" + user + ":xxxxx@" + host
	}
	return s
}
