// Package migrations holds cmdtrack's schema as plain, numbered SQL files.
// They are embedded in the binary and applied by store.Migrate (tern), under
// an advisory lock so that several replicas starting at once apply them once.
package migrations

import "embed"

// FS holds every migration, named NNN_description.sql.
//
//go:embed *.sql
var FS embed.FS
