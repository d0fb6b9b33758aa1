package store

import "context"

// MigrateTo migrates to version, for tests of a migration.
func (s *Store) MigrateTo(ctx context.Context, version int32) error { return s.migrateTo(ctx, version) }
