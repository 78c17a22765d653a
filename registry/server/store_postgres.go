package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lariat-gw/lariat/registry"
)

// PostgresStore is the Store on PostgreSQL. Update runs a READ COMMITTED transaction in
// which Model takes a row lock (SELECT ... FOR UPDATE) on the model, so writers of one
// model queue behind each other; transactions aborted by a serialization failure or
// a deadlock are retried, and so are those that lost their connection (PostgreSQL
// restarted) before running anything, or at any point when read-only. View runs a
// read-only REPEATABLE READ transaction.
type PostgresStore struct {
	pool *pgxpool.Pool
}

var _ Store = (*PostgresStore)(nil)

// maxTxAttempts bounds the retries of a transaction that PostgreSQL aborted.
const maxTxAttempts = 10

// migrations are applied in order, each once, recorded in registry_schema_migrations.
// Append only: never edit an applied entry.
var migrations = []string{
	`CREATE TABLE IF NOT EXISTS registered_models (
		name text PRIMARY KEY,
		creation_timestamp bigint NOT NULL,
		last_updated_timestamp bigint NOT NULL,
		user_id text NOT NULL DEFAULT '',
		description text NOT NULL DEFAULT '',
		tags jsonb NOT NULL DEFAULT '[]',
		aliases jsonb NOT NULL DEFAULT '[]',
		last_version bigint NOT NULL DEFAULT 0
	);
	CREATE TABLE IF NOT EXISTS model_versions (
		name text NOT NULL REFERENCES registered_models(name) ON UPDATE CASCADE ON DELETE CASCADE,
		version bigint NOT NULL,
		creation_timestamp bigint NOT NULL,
		last_updated_timestamp bigint NOT NULL,
		user_id text NOT NULL DEFAULT '',
		current_stage text NOT NULL DEFAULT 'None',
		description text NOT NULL DEFAULT '',
		source text NOT NULL DEFAULT '',
		run_id text NOT NULL DEFAULT '',
		run_link text NOT NULL DEFAULT '',
		status text NOT NULL DEFAULT 'READY',
		status_message text NOT NULL DEFAULT '',
		tags jsonb NOT NULL DEFAULT '[]',
		serving_endpoint text NOT NULL DEFAULT '',
		training_job text NOT NULL DEFAULT '',
		params jsonb NOT NULL DEFAULT '{}',
		metrics jsonb NOT NULL DEFAULT '{}',
		feature_views jsonb NOT NULL DEFAULT '[]',
		PRIMARY KEY (name, version)
	);`,
	`CREATE TABLE IF NOT EXISTS runs (
		run_id text PRIMARY KEY,
		data jsonb NOT NULL
	);`,
}

// migrationLockID is the advisory lock key that serializes concurrent migrations.
const migrationLockID = 0x6c61726961745201

// OpenPostgresStore connects to PostgreSQL at dsn and brings the schema up to date.
func OpenPostgresStore(ctx context.Context, dsn string) (*PostgresStore, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to registry database %q: %w", redactDSN(dsn), err)
	}
	s := &PostgresStore{pool: pool}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("cannot migrate registry database %q: %w", redactDSN(dsn), err)
	}
	return s, nil
}

func (s *PostgresStore) migrate(ctx context.Context) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLockID)); err != nil {
			return fmt.Errorf("cannot take migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS registry_schema_migrations (
			version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("cannot create migrations table: %w", err)
		}
		var applied int
		if err := tx.QueryRow(ctx, `SELECT COALESCE(max(version), 0) FROM registry_schema_migrations`).Scan(&applied); err != nil {
			return fmt.Errorf("cannot read schema version: %w", err)
		}
		for i := applied; i < len(migrations); i++ {
			if _, err := tx.Exec(ctx, migrations[i]); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO registry_schema_migrations (version) VALUES ($1)`, i+1); err != nil {
				return fmt.Errorf("cannot record migration %d: %w", i+1, err)
			}
		}
		return nil
	})
}

// View implements Store.
func (s *PostgresStore) View(ctx context.Context, fn func(Tx) error) error {
	return s.run(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, false, fn)
}

// Update implements Store.
func (s *PostgresStore) Update(ctx context.Context, fn func(Tx) error) error {
	return s.run(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, true, fn)
}

func (s *PostgresStore) run(ctx context.Context, opts pgx.TxOptions, write bool, fn func(Tx) error) error {
	for attempt := 1; ; attempt++ {
		ran := false
		err := pgx.BeginTxFunc(ctx, s.pool, opts, func(tx pgx.Tx) error {
			ran = true
			return fn(&pgTx{ctx: ctx, tx: tx, write: write})
		})
		// A connection lost before the transaction ran anything (a
		// pooled one the server ended when it restarted), or lost by a
		// read-only one, leaves nothing done: run it again on another.
		// A write that lost it may have committed, and is not.
		lost := connectionLost(err) && (!ran || !write)
		if err == nil || attempt >= maxTxAttempts || !isRetryable(err) && !lost {
			return err
		}
		t := time.NewTimer(time.Duration(attempt) * 5 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// Close implements Store.
func (s *PostgresStore) Close() error {
	s.pool.Close()
	return nil
}

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// connectionLost reports whether err says the connection to the server
// is gone: the server ended it (class 57P: shut down, crashed, starting
// up), a connection exception (class 08), or a network error.
func connectionLost(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if c := pgCode(err); c != "" {
		return strings.HasPrefix(c, "57P") || strings.HasPrefix(c, "08")
	}
	var ne net.Error
	var ce *pgconn.ConnectError
	return pgconn.SafeToRetry(err) || errors.Is(err, pgconn.ErrConnClosed) || errors.As(err, &ce) ||
		errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// isRetryable reports serialization failures and deadlocks.
func isRetryable(err error) bool {
	c := pgCode(err)
	return c == "40001" || c == "40P01"
}

const uniqueViolation = "23505"

type pgTx struct {
	ctx   context.Context
	tx    pgx.Tx
	write bool
}

const modelColumns = `name, creation_timestamp, last_updated_timestamp, user_id, description, tags, aliases, last_version`

func scanModel(row pgx.Row) (*ModelRecord, error) {
	var m ModelRecord
	err := row.Scan(&m.Name, &m.CreationTimestamp, &m.LastUpdatedTimestamp, &m.UserID, &m.Description, &m.Tags, &m.Aliases, &m.LastVersion)
	if err != nil {
		return nil, err
	}
	return &m, nil
}

func (t *pgTx) Model(name string) (*ModelRecord, error) {
	q := `SELECT ` + modelColumns + ` FROM registered_models WHERE name = $1`
	if t.write {
		q += ` FOR UPDATE`
	}
	m, err := scanModel(t.tx.QueryRow(t.ctx, q, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read model %q: %w", name, err)
	}
	return m, nil
}

func modelArgs(m *ModelRecord) []any {
	return []any{m.Name, m.CreationTimestamp, m.LastUpdatedTimestamp, m.UserID, m.Description,
		nonNilSlice(m.Tags), nonNilSlice(m.Aliases), m.LastVersion}
}

func (t *pgTx) InsertModel(m *ModelRecord) error {
	_, err := t.tx.Exec(t.ctx, `INSERT INTO registered_models (`+modelColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, modelArgs(m)...)
	if pgCode(err) == uniqueViolation {
		return ErrAlreadyExists
	}
	if err != nil {
		return fmt.Errorf("cannot insert model %q: %w", m.Name, err)
	}
	return nil
}

func (t *pgTx) PutModel(m *ModelRecord) error {
	tag, err := t.tx.Exec(t.ctx, `UPDATE registered_models SET creation_timestamp = $2, last_updated_timestamp = $3,
		user_id = $4, description = $5, tags = $6, aliases = $7, last_version = $8 WHERE name = $1`, modelArgs(m)...)
	if err != nil {
		return fmt.Errorf("cannot update model %q: %w", m.Name, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

func (t *pgTx) RenameModel(oldName, newName string) error {
	tag, err := t.tx.Exec(t.ctx, `UPDATE registered_models SET name = $2 WHERE name = $1`, oldName, newName)
	if pgCode(err) == uniqueViolation {
		return ErrAlreadyExists
	}
	if err != nil {
		return fmt.Errorf("cannot rename model %q to %q: %w", oldName, newName, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

func (t *pgTx) DeleteModel(name string) error {
	tag, err := t.tx.Exec(t.ctx, `DELETE FROM registered_models WHERE name = $1`, name)
	if err != nil {
		return fmt.Errorf("cannot delete model %q: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

func (t *pgTx) ScanModels(fn func(*ModelRecord) error) error {
	rows, err := t.tx.Query(t.ctx, `SELECT `+modelColumns+` FROM registered_models ORDER BY name`)
	if err != nil {
		return fmt.Errorf("cannot list models: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		m, err := scanModel(rows)
		if err != nil {
			return fmt.Errorf("cannot read model row: %w", err)
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot list models: %w", err)
	}
	return nil
}

const versionColumns = `name, version, creation_timestamp, last_updated_timestamp, user_id, current_stage, description,
	source, run_id, run_link, status, status_message, tags, serving_endpoint, training_job, params, metrics, feature_views`

func scanVersion(row pgx.Row) (*registry.ModelVersion, error) {
	var v registry.ModelVersion
	var n int64
	err := row.Scan(&v.Name, &n, &v.CreationTimestamp, &v.LastUpdatedTimestamp, &v.UserID, &v.CurrentStage, &v.Description,
		&v.Source, &v.RunID, &v.RunLink, &v.Status, &v.StatusMessage, &v.Tags, &v.ServingEndpoint, &v.TrainingJob,
		&v.Params, &v.Metrics, &v.FeatureViews)
	if err != nil {
		return nil, err
	}
	v.Version = formatVersion(n)
	if len(v.Tags) == 0 {
		v.Tags = nil
	}
	if len(v.Params) == 0 {
		v.Params = nil
	}
	if len(v.Metrics) == 0 {
		v.Metrics = nil
	}
	if len(v.FeatureViews) == 0 {
		v.FeatureViews = nil
	}
	return &v, nil
}

func (t *pgTx) Version(name string, version int64) (*registry.ModelVersion, error) {
	v, err := scanVersion(t.tx.QueryRow(t.ctx, `SELECT `+versionColumns+` FROM model_versions WHERE name = $1 AND version = $2`, name, version))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read version %d of %q: %w", version, name, err)
	}
	return v, nil
}

func (t *pgTx) PutVersion(v *registry.ModelVersion) error {
	n, err := parseVersion(v.Version)
	if err != nil {
		return fmt.Errorf("BUG: storing version %q of %q: %w", v.Version, v.Name, err)
	}
	params := v.Params
	if params == nil {
		params = map[string]string{}
	}
	metrics := v.Metrics
	if metrics == nil {
		metrics = map[string]float64{}
	}
	_, err = t.tx.Exec(t.ctx, `INSERT INTO model_versions (`+versionColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
		ON CONFLICT (name, version) DO UPDATE SET
			creation_timestamp = EXCLUDED.creation_timestamp, last_updated_timestamp = EXCLUDED.last_updated_timestamp,
			user_id = EXCLUDED.user_id, current_stage = EXCLUDED.current_stage, description = EXCLUDED.description,
			source = EXCLUDED.source, run_id = EXCLUDED.run_id, run_link = EXCLUDED.run_link, status = EXCLUDED.status,
			status_message = EXCLUDED.status_message, tags = EXCLUDED.tags, serving_endpoint = EXCLUDED.serving_endpoint,
			training_job = EXCLUDED.training_job, params = EXCLUDED.params, metrics = EXCLUDED.metrics,
			feature_views = EXCLUDED.feature_views`,
		v.Name, n, v.CreationTimestamp, v.LastUpdatedTimestamp, v.UserID, v.CurrentStage, v.Description,
		v.Source, v.RunID, v.RunLink, v.Status, v.StatusMessage, nonNilSlice(v.Tags), v.ServingEndpoint, v.TrainingJob,
		params, metrics, nonNilSlice(v.FeatureViews))
	if err != nil {
		return fmt.Errorf("cannot store version %s of %q: %w", v.Version, v.Name, err)
	}
	return nil
}

func (t *pgTx) DeleteVersion(name string, version int64) error {
	tag, err := t.tx.Exec(t.ctx, `DELETE FROM model_versions WHERE name = $1 AND version = $2`, name, version)
	if err != nil {
		return fmt.Errorf("cannot delete version %d of %q: %w", version, name, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

func (t *pgTx) ScanVersions(name string, fn func(*registry.ModelVersion) error) error {
	var rows pgx.Rows
	var err error
	if name != "" {
		rows, err = t.tx.Query(t.ctx, `SELECT `+versionColumns+` FROM model_versions WHERE name = $1 ORDER BY version`, name)
	} else {
		rows, err = t.tx.Query(t.ctx, `SELECT `+versionColumns+` FROM model_versions ORDER BY name, version`)
	}
	if err != nil {
		return fmt.Errorf("cannot list versions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		v, err := scanVersion(rows)
		if err != nil {
			return fmt.Errorf("cannot read version row: %w", err)
		}
		if err := fn(v); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot list versions: %w", err)
	}
	return nil
}

// nonNilSlice makes a nil slice encode as an empty JSON array rather than null.
func nonNilSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (t *pgTx) Run(id string) (*registry.RunRecord, error) {
	var r registry.RunRecord
	err := t.tx.QueryRow(t.ctx, `SELECT data FROM runs WHERE run_id = $1`, id).Scan(&r)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read run %q: %w", id, err)
	}
	return &r, nil
}

func (t *pgTx) PutRun(r *registry.RunRecord) error {
	_, err := t.tx.Exec(t.ctx, `INSERT INTO runs (run_id, data) VALUES ($1, $2)
		ON CONFLICT (run_id) DO UPDATE SET data = EXCLUDED.data`, r.RunID, r)
	if err != nil {
		return fmt.Errorf("cannot store run %q: %w", r.RunID, err)
	}
	return nil
}

func (t *pgTx) ScanRuns(fn func(*registry.RunRecord) error) error {
	rows, err := t.tx.Query(t.ctx, `SELECT data FROM runs ORDER BY run_id COLLATE "C"`)
	if err != nil {
		return fmt.Errorf("cannot list runs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r registry.RunRecord
		if err := rows.Scan(&r); err != nil {
			return fmt.Errorf("cannot read run row: %w", err)
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot list runs: %w", err)
	}
	return nil
}
