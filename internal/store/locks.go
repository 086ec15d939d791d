package store

import (
	"context"
	"sync"
)

// keyLocks serializes, inside one process, the holders of each advisory
// lock key, and bounds how many connections holders pin at once. Without
// it every worker waiting for a busy document would wait inside Postgres,
// each on a connection of its own: a burst of requests into one
// destination would take as many connections as there are workers and
// starve the pool, and the server's max_connections, of the rest.
type keyLocks struct {
	mu   sync.Mutex
	keys map[int64]*keyLock
	// conns bounds the connections pinned by holders, so that the pool
	// always keeps some for the statements holders and everyone else run.
	conns chan struct{}
}

type keyLock struct {
	held  chan struct{}
	users int
}

func newKeyLocks(conns int) *keyLocks {
	return &keyLocks{keys: map[int64]*keyLock{}, conns: make(chan struct{}, max(conns, 1))}
}

// lock takes ids (sorted, distinct) in order, then a connection slot, and
// returns the function that gives them back.
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
	select {
	case l.conns <- struct{}{}:
	case <-ctx.Done():
		unlock()
		return nil, ctx.Err()
	}
	return func() {
		<-l.conns
		unlock()
	}, nil
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
