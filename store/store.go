// Package store keeps command lifecycles in PostgreSQL: the schema
// (migrations), the merge upsert, the history, and the dead letters.
package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"

	"github.com/cmdtrack/cmdtrack/migrations"
)

// versionTable is tern's bookkeeping table; unqualified, so it lives in the
// connection's search_path like the rest of the schema.
const versionTable = "cmdtrack_schema_version"

// Store writes to one PostgreSQL database through a connection pool.
type Store struct {
	pool     *pgxpool.Pool
	onChange ChangeFunc
	headers  knownHeaders
}

// Options tune the connection pool.
type Options struct {
	MaxConns int32
	// Schema, when set, is put first in search_path. Tests use it to give
	// each test its own schema; deployments normally leave it empty.
	Schema string
	// ReadOnly makes every transaction read-only (the console's): a
	// write is refused by PostgreSQL whatever the role may do.
	ReadOnly bool
	// GenericPlans makes every prepared statement's plan generic
	// (plan_cache_mode force_generic_plan), made once per connection
	// rather than for each call's values: for a pool whose statements are
	// few, short and keyed (the webhook deliverer's), where PostgreSQL kept
	// choosing custom plans and planning took longer than running (make
	// bench with one endpoint: a delivered settle 0.31 ms of planning, 0.13
	// ms of execution). Their plans are tested generic too
	// (TestOutboxStatementsProbeTheBacklogBySubject).
	GenericPlans bool
}

// Open parses url and creates the pool. It does not wait for the database:
// the worker must start (and report not-ready) while PostgreSQL is away.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors can echo the URL, password included.
		return nil, interpretError(fmt.Errorf("invalid database URL: %w", redactedError{err}))
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if opts.Schema != "" {
		cfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{opts.Schema}.Sanitize()
	}
	if _, set := cfg.ConnConfig.RuntimeParams["plan_cache_mode"]; opts.GenericPlans && !set {
		cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	}
	if opts.ReadOnly {
		cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	} else {
		// A session that is refused a write (25006) is on a server that no
		// longer takes them: the old primary of a failover, its connection
		// kept (one DNS name that moved, the server demoted without a
		// restart). pgx closes the connection when this returns false, so
		// the pool dials afresh, and the URL's target_session_attrs or the
		// moved name finds the primary, instead of handing the same
		// session out to fail every retry.
		onPgError := cfg.ConnConfig.OnPgError // closes on FATAL
		cfg.ConnConfig.OnPgError = func(c *pgconn.PgConn, err *pgconn.PgError) bool {
			if err.Code == "25006" {
				return false
			}
			return onPgError == nil || onPgError(c, err)
		}
	}
	// Every statement of cmdtrack's is short; PostgreSQL's JIT compiles
	// any whose estimate passes jit_above_cost, which a table never
	// analyzed or a wide CTE reaches easily: the webhooks' fold spent
	// 885 ms compiling to move 50 events. A URL's jit=on still wins.
	if _, ok := cfg.ConnConfig.RuntimeParams["jit"]; !ok {
		cfg.ConnConfig.RuntimeParams["jit"] = "off"
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "cmdtrack"
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	cfg.HealthCheckPeriod = 10 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, interpretError(fmt.Errorf("create database pool: %w", err))
	}
	return &Store{pool: pool}, nil
}

// OnChange sets f to be told, after each commit of Apply, which command
// rows it changed, from what to what (the outcome metrics). Apply then reads
// each row's state before and after; without f, it does not. Set it before
// Apply is first called.
func (s *Store) OnChange(f ChangeFunc) { s.onChange = f }

// Close waits for connections in use to be returned and closes them.
func (s *Store) Close() { s.pool.Close() }

// Pool exposes the pool to tests and to tools that query the schema.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks that a connection can be had and used. ctx bounds the wait.
func (s *Store) Ping(ctx context.Context) error {
	return interpretError(s.pool.Ping(ctx))
}

// Migrate applies every migration not yet applied. tern holds an advisory
// lock meanwhile, so replicas starting together apply each migration once.
// ctx bounds the whole run.
func (s *Store) Migrate(ctx context.Context) error {
	return s.MigrateTo(ctx, -1)
}

// MigrateTo migrates up to version (-1: the latest), for tests and
// benchmarks of a migration: the migrations have no way down.
func (s *Store) MigrateTo(ctx context.Context, version int32) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return interpretError(fmt.Errorf("migrate: %w", err))
	}
	defer conn.Release()
	m, err := migrate.NewMigrator(ctx, conn.Conn(), versionTable)
	if err != nil {
		return interpretError(fmt.Errorf("migrate: %w", err))
	}
	if err := m.LoadMigrations(migrations.FS); err != nil {
		return interpretError(fmt.Errorf("migrate: load: %w", err))
	}
	if version < 0 {
		err = m.Migrate(ctx)
	} else {
		err = m.MigrateTo(ctx, version)
	}
	if err != nil {
		return interpretError(fmt.Errorf("migrate: %w", err))
	}
	return nil
}

// SchemaVersion returns the applied and the latest known migration numbers;
// readiness wants them equal.
func (s *Store) SchemaVersion(ctx context.Context) (applied, latest int32, err error) {
	names, err := migrate.FindMigrations(migrations.FS)
	if err != nil {
		return 0, 0, interpretError(err)
	}
	err = s.pool.QueryRow(ctx, "SELECT version FROM "+versionTable).Scan(&applied)
	if err != nil {
		return 0, int32(len(names)), interpretError(fmt.Errorf("read schema version: %w", err))
	}
	return applied, int32(len(names)), nil
}
