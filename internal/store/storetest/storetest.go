// Package storetest gives each test a fresh, migrated Postgres database.
package storetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bucketbridge/bucketbridge/internal/store"
	"github.com/bucketbridge/bucketbridge/migrations"
)

// DefaultURL is the database tests use when DATABASE_URL is not set.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// MaxConns sizes each test store's connection pool for worker pools of a
// few workers running steps that hold advisory locks.
const MaxConns = 40

// AdminURL is the database tests connect to for creating others.
func AdminURL() string {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// NewDatabase creates an empty database that is dropped when the test ends,
// and returns its URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	return createDatabase(t, "")
}

// New returns a store on a fresh database with every migration applied,
// copied from a template that is migrated once per schema version.
func New(t testing.TB) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), NewMigratedDatabase(t), MaxConns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// NewMigratedDatabase creates a database with every migration applied,
// dropped when the test ends, and returns its URL.
func NewMigratedDatabase(t testing.TB) string {
	t.Helper()
	return createDatabase(t, template(t))
}

func createDatabase(t testing.TB, from string) string {
	t.Helper()
	ctx := context.Background()
	admin := connect(t, AdminURL())
	name := "bb_test_" + randomSuffix()
	sql := "CREATE DATABASE " + name
	if from != "" {
		sql += " TEMPLATE " + from
	}
	if _, err := admin.Exec(ctx, sql); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := connect(t, AdminURL())
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database: %v", err)
		}
	})
	return withDatabase(t, AdminURL(), name)
}

// template returns the name of a migrated template database for the
// current migrations, creating it under an advisory lock so that test
// binaries running at once agree on one.
func template(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	name := "bb_template_" + migrationsHash(t)
	admin := connect(t, AdminURL())
	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock(727272)"); err != nil {
		t.Fatal(err)
	}
	defer admin.Exec(ctx, "SELECT pg_advisory_unlock(727272)") //nolint:errcheck // the connection closes anyway
	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		return name
	}
	building := name + "_build"
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+building+" WITH (FORCE)"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+building); err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(ctx, withDatabase(t, AdminURL(), building), MaxConns)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Migrate(ctx)
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	// Renaming last means a half-built template is never used.
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+building+" RENAME TO "+name); err != nil {
		t.Fatal(err)
	}
	return name
}

func migrationsHash(t testing.TB) string {
	h := sha256.New()
	err := fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, path)
		h.Write([]byte(path))
		h.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

func connect(t testing.TB, dbURL string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect to Postgres at %s (start it, or set DATABASE_URL): %v", redact(dbURL), err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func withDatabase(t testing.TB, dbURL, name string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

func redact(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "(unparseable url)"
	}
	return u.Redacted()
}

func randomSuffix() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}
