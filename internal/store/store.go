// Package store keeps replication requests, their steps and their timeline
// in Postgres. All SQL of bucketbridge lives here.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/migrations"
)

// Store is the Postgres store; it is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	db   *sql.DB // the same pool seen through database/sql, for goose
	mig  *goose.Provider
	// wake rouses idle workers, deliveries the webhook dispatchers, events
	// the event streams; listener hears the other replicas' notifications
	// for all three on one connection.
	wake       *notifier
	deliveries *notifier
	// locks queues Lock's holders inside the process; session holds what
	// they take in Postgres without waiting.
	locks    *keyLocks
	session  *sharedSession
	events   *notifier
	listener *listener
	// records sends the records workers write at the same moment together.
	records *batcher

	// idempotencyTTL is how long an Idempotency-Key is remembered; now is
	// the clock it is measured with.
	idempotencyTTL time.Duration
	now            func() time.Time

	hooks []Hook
	after []func(provision.Change)
}

// Open connects to the database at url, with a pool of at most maxConns
// connections unless url sets pool_max_conns itself. It does not migrate.
func Open(ctx context.Context, url string, maxConns int) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	// pgxpool drops pool_max_conns from what it parsed; the connection
	// parser keeps unknown settings, so it tells whether the URL set it.
	conn, err := pgconn.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if _, set := conn.RuntimeParams["pool_max_conns"]; !set && maxConns > 0 {
		cfg.MaxConns = int32(min(maxConns, 1<<20))
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	// The session lock lets several replicas start at once: one migrates,
	// the others wait for it.
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		db.Close()
		pool.Close()
		return nil, fmt.Errorf("make migration lock: %w", err)
	}
	// Migrations written on branches that land in another order than they
	// were numbered are still applied, rather than refused on databases that
	// already have a later one.
	mig, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithSessionLocker(locker), goose.WithAllowOutofOrder(true))
	if err != nil {
		db.Close()
		pool.Close()
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	origin := newOrigin()
	s := &Store{pool: pool, db: db, mig: mig,
		wake: newNotifier(pool, workChannel, origin, notifyEvery), deliveries: newNotifier(pool, DeliveriesChannel, origin, notifyEvery),
		events: newNotifier(pool, eventsChannel, origin, eventsEvery), idempotencyTTL: DefaultIdempotencyTTL, now: time.Now,
		locks: newKeyLocks(lockConns(int(cfg.MaxConns))), session: newSharedSession(pool),
		records: newBatcher(pool)}
	s.listener = newListener(pool, s.wake, s.deliveries, s.events)
	return s, nil
}

// lockConns is how many of a pool's connections Lock's holders waiting for
// another process may pin at once: two thirds, leaving the rest for the
// statements they and everyone else run, each of which returns its
// connection without waiting on another.
func lockConns(pool int) int { return pool * 2 / 3 }

// MaxConns is the size of the connection pool.
func (s *Store) MaxConns() int { return int(s.pool.Config().MaxConns) }

// Close releases every connection.
func (s *Store) Close() {
	s.listener.close()
	s.session.close()
	s.wake.close()
	s.deliveries.close()
	s.events.close()
	s.db.Close()
	s.pool.Close()
}

// Migrate applies every pending migration.
func (s *Store) Migrate(ctx context.Context) error {
	if _, err := s.mig.Up(ctx); err != nil {
		return fmt.Errorf("migrate database: %w", err)
	}
	return nil
}

// MigrateDown rolls back every migration, newest first.
func (s *Store) MigrateDown(ctx context.Context) error {
	if _, err := s.mig.DownTo(ctx, 0); err != nil {
		return fmt.Errorf("roll back database: %w", err)
	}
	return nil
}

// ErrMigrationsPending means the schema is older than this binary.
var ErrMigrationsPending = errors.New("database migrations are not current")

// Ready reports whether the database answers and its schema is current.
func (s *Store) Ready(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping database: %w", err)
	}
	pending, err := s.mig.HasPending(ctx)
	if err != nil {
		return fmt.Errorf("read migration status: %w", err)
	}
	if pending {
		return ErrMigrationsPending
	}
	return nil
}
