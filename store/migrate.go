package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/agentlab-sdk/agentlab"
)

// migrationFS holds the schema migrations, named NNNN_description.sql and
// numbered from 0001 without gaps. They only move forward: a released file
// is never edited; a change is a new file.
//
//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one numbered schema change.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads migrationFS in version order and checks numbering.
func loadMigrations() ([]migration, error) {
	entries, err := migrationFS.ReadDir("migrations")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		m, err := readMigration(e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("check migration %s: want version %d", m.name, i+1)
		}
	}
	return ms, nil
}

// readMigration parses one file name and reads its SQL.
func readMigration(name string) (migration, error) {
	num, _, ok := strings.Cut(name, "_")
	v, err := strconv.Atoi(num)
	if !ok || err != nil || v <= 0 {
		return migration{}, fmt.Errorf("parse migration name %q: want NNNN_name.sql", name)
	}
	b, err := migrationFS.ReadFile(path.Join("migrations", name))
	if err != nil {
		return migration{}, fmt.Errorf("read migration %s: %w", name, err)
	}
	return migration{version: v, name: name, sql: string(b)}, nil
}

// migrate applies the pending migrations, each in its own IMMEDIATE
// transaction that re-reads the version first, so that processes opening
// the same fresh file at once apply each migration exactly once.
func (s *SQLite) migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	for _, m := range ms {
		err := s.retry(ctx, func() error { return s.applyMigration(ctx, m, len(ms)) })
		if err != nil {
			return fmt.Errorf("apply migration %s: %w", m.name, s.translate(err))
		}
	}
	return nil
}

// applyMigration applies m unless the database already has it.
func (s *SQLite) applyMigration(ctx context.Context, m migration, latest int) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	cur, err := schemaVersion(ctx, tx)
	if err != nil {
		return err
	}
	if cur > latest {
		return fmt.Errorf("check schema: database version %d is newer than this SDK's %d: %w",
			cur, latest, agentlab.ErrUnsupported)
	}
	if cur >= m.version {
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx,
		`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		m.version, m.name, s.opts.Now().UnixNano())
	if err != nil {
		return err
	}
	s.log.Debug("applied migration", "path", s.path, "migration", m.name)
	return tx.Commit()
}

// schemaVersion creates the bookkeeping table if needed and returns the
// highest applied version (0 for a fresh database).
func schemaVersion(ctx context.Context, tx *sql.Tx) (int, error) {
	_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	)`)
	if err != nil {
		return 0, err
	}
	var v int
	err = tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}
