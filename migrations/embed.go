// Package migrations holds the database schema as goose SQL migrations,
// embedded so the server applies them at start-up.
package migrations

import "embed"

// FS holds every migration file.
//
//go:embed *.sql
var FS embed.FS
