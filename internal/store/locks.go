package store

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// keyLocks serializes, inside one process, the holders of each advisory
// lock key, and bounds how many connections holders waiting on another
// process pin at once. Without it every worker waiting for a busy document
// would wait inside Postgres, each on a connection of its own: a burst of
// requests into one destination would take as many connections as there
// are workers and starve the pool, and the server's max_connections, of the
// rest.
type keyLocks struct {
	mu   sync.Mutex
	keys map[int64]*keyLock
	// conns bounds the connections pinned by holders waiting for another
	// process, so that the pool always keeps some for everyone's statements.
	conns chan struct{}
}

type keyLock struct {
	held  chan struct{}
	users int
}

func newKeyLocks(conns int) *keyLocks {
	return &keyLocks{keys: map[int64]*keyLock{}, conns: make(chan struct{}, max(conns, 1))}
}

// lock takes ids (sorted, distinct) in order and returns the function that
// gives them back.
func (l *keyLocks) lock(ctx context.Context, ids []int64) (func(), error) {
	var taken []int64
	unlock := func() {
		for i := len(taken) - 1; i >= 0; i-- {
			l.release(taken[i])
		}
	}
	for _, id := range ids {
		if err := l.acquire(ctx, id); err != nil {
			unlock()
			return nil, err
		}
		taken = append(taken, id)
	}
	return unlock, nil
}

// conn takes one of the connection slots and returns the function that
// gives it back.
func (l *keyLocks) conn(ctx context.Context) (func(), error) {
	select {
	case l.conns <- struct{}{}:
		return func() { <-l.conns }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *keyLocks) acquire(ctx context.Context, id int64) error {
	l.mu.Lock()
	k, ok := l.keys[id]
	if !ok {
		k = &keyLock{held: make(chan struct{}, 1)}
		l.keys[id] = k
	}
	k.users++
	l.mu.Unlock()
	select {
	case k.held <- struct{}{}:
		return nil
	case <-ctx.Done():
		l.forget(id, k)
		return ctx.Err()
	}
}

func (l *keyLocks) release(id int64) {
	l.mu.Lock()
	k := l.keys[id]
	l.mu.Unlock()
	<-k.held
	l.forget(id, k)
}

// forget drops a key nobody holds or waits for.
func (l *keyLocks) forget(id int64, k *keyLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if k.users--; k.users == 0 {
		delete(l.keys, id)
	}
}

// sharedSession is the one Postgres session on which the process holds the
// advisory locks it gets without waiting. keyLocks already gives each key
// to one holder of the process at a time, so one session can hold the keys
// of many holders at once, and a lock held through a step's AWS calls pins
// no connection of the pool.
type sharedSession struct {
	pool *pgxpool.Pool
	// turn is the session's mutex, a channel so that a locker can stop
	// waiting for it when its context ends.
	turn chan struct{}
	conn *pgx.Conn // nil until first used, and after it broke
	// gen counts sessions: locks die with the session that took them, so a
	// holder gives them back only to that one.
	gen int
}

// sessionTimeout bounds each statement on the shared session, which runs
// under its mutex: one stuck statement would stall every locker.
const sessionTimeout = 30 * time.Second

func newSharedSession(pool *pgxpool.Pool) *sharedSession {
	return &sharedSession{pool: pool, turn: make(chan struct{}, 1)}
}

// take waits for the session's turn; give hands it back.
func (s *sharedSession) take(ctx context.Context) error {
	select {
	case s.turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *sharedSession) give() { <-s.turn }

// tryLock takes every id, or none when another session holds any of them,
// without waiting. It returns the session's generation for unlock.
func (s *sharedSession) tryLock(ctx context.Context, ids []int64) (gen int, ok bool, err error) {
	if err := s.take(ctx); err != nil {
		return 0, false, err
	}
	defer s.give()
	// A session that broke since its last statement (a restarted database,
	// a cut connection) is replaced once.
	for fresh := false; ; {
		if s.conn == nil {
			c, err := s.pool.Acquire(ctx)
			if err != nil {
				return 0, false, err
			}
			s.conn, fresh = c.Hijack(), true
			s.gen++
		}
		gen, ok, err = s.tryLockOnce(ctx, ids)
		if err == nil || fresh {
			return gen, ok, err
		}
	}
}

func (s *sharedSession) tryLockOnce(ctx context.Context, ids []int64) (gen int, ok bool, err error) {
	// The statements do not end with the caller's context: cancelled half-way,
	// one would break the session, and every holder's locks with it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sessionTimeout)
	defer cancel()
	var got []int64
	if err := s.conn.QueryRow(ctx, `SELECT coalesce(array_agg(id), '{}') FROM unnest($1::bigint[]) AS id
WHERE pg_try_advisory_lock(id)`, ids).Scan(&got); err != nil {
		s.drop()
		return 0, false, err
	}
	if len(got) == len(ids) {
		return s.gen, true, nil
	}
	if len(got) > 0 {
		if err := s.unlockLocked(ctx, got); err != nil {
			return 0, false, err
		}
	}
	return 0, false, nil
}

// unlock gives back ids taken by tryLock in session gen.
func (s *sharedSession) unlock(gen int, ids []int64) {
	s.take(context.Background()) //nolint:errcheck // never cancelled
	defer s.give()
	if s.conn == nil || s.gen != gen {
		return // that session is gone, and its locks with it
	}
	ctx, cancel := context.WithTimeout(context.Background(), sessionTimeout)
	defer cancel()
	s.unlockLocked(ctx, ids) //nolint:errcheck // a session that cannot unlock is closed, which unlocks
}

func (s *sharedSession) unlockLocked(ctx context.Context, ids []int64) error {
	if _, err := s.conn.Exec(ctx, "SELECT pg_advisory_unlock(id) FROM unnest($1::bigint[]) AS id", ids); err != nil {
		s.drop()
		return err
	}
	return nil
}

// drop closes a session that failed a statement: whatever it held is
// released, rather than held by a session nobody can trust to unlock it.
func (s *sharedSession) drop() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s.conn.Close(ctx) //nolint:errcheck // closing a broken connection
	s.conn = nil
}

func (s *sharedSession) close() {
	s.take(context.Background()) //nolint:errcheck // never cancelled
	defer s.give()
	if s.conn != nil {
		s.drop()
	}
}
