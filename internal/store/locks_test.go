package store_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bucketbridge/bucketbridge/internal/store"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

// occupancy counts the holders inside a document, and the most there were
// at once.
type occupancy struct{ inside, most atomic.Int32 }

// enter counts one more holder until leave.
func (o *occupancy) enter() (leave func()) {
	now := o.inside.Add(1)
	for m := o.most.Load(); now > m && !o.most.CompareAndSwap(m, now); m = o.most.Load() {
	}
	return func() { o.inside.Add(-1) }
}

// report fails t with the errors the holders sent, and when the document
// ever had more than one holder at once.
func (o *occupancy) report(t *testing.T, errs chan error) {
	t.Helper()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if most := o.most.Load(); most != 1 {
		t.Errorf("the shared document had %d holders at once, want 1", most)
	}
}

// openReplicas opens two stores on the database at url, as two server
// replicas would, each with a pool of maxConns.
func openReplicas(ctx context.Context, t *testing.T, url string, maxConns int) [2]*store.Store {
	t.Helper()
	var replicas [2]*store.Store
	for i := range replicas {
		s, err := store.Open(ctx, url, maxConns)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		replicas[i] = s
	}
	return replicas
}

// TestManyLockersShareASmallPool: 40 workers take document locks at once
// on a pool of four connections, half of them the same document, and each
// runs statements while it holds its lock, as steps do. Every one gets its
// turn: waiting for a busy document holds no connection, so holders always
// find one for their statements, and one document never has two holders.
func TestManyLockersShareASmallPool(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := store.Open(ctx, storetest.NewMigratedDatabase(t)+"&pool_max_conns=4", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 40
	var shared occupancy
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		key := "arn:aws:s3:::shared"
		if i%2 == 1 {
			key = fmt.Sprintf("arn:aws:s3:::own-%d", i)
		}
		wg.Go(func() {
			unlock, err := s.Lock(ctx, key)
			if err != nil {
				errs <- err
				return
			}
			defer unlock()
			if key == "arn:aws:s3:::shared" {
				defer shared.enter()()
			}
			for range 3 {
				if err := s.RecordGranted(ctx, "01a237b3-4b20-7d1c-bc80-ec10d6885ed1", map[string][]string{key: {"role"}}); err != nil {
					errs <- err
					return
				}
				if _, err := s.Granted(ctx, key); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	shared.report(t, errs)
}

// TestLocksExcludeAcrossReplicas: two replicas (two stores on one database)
// lock one document from 40 workers at once, some together with a document
// of their own, so that each replica takes keys both on its shared session
// and, when the other replica holds them, by waiting on a connection of its
// own. The document never has two holders, and every worker gets its turn.
func TestLocksExcludeAcrossReplicas(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	replicas := openReplicas(ctx, t, storetest.NewMigratedDatabase(t), 6)
	const n = 40
	var shared occupancy
	var done atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		keys := []string{"arn:aws:s3:::shared"}
		if i%3 == 0 {
			keys = append(keys, fmt.Sprintf("arn:aws:s3:::own-%d", i))
		}
		s := replicas[i%2]
		wg.Go(func() {
			unlock, err := s.Lock(ctx, keys...)
			if err != nil {
				errs <- err
				return
			}
			defer unlock()
			defer shared.enter()()
			time.Sleep(time.Millisecond) // a step's AWS call
			if _, err := s.Granted(ctx, keys[0]); err != nil {
				errs <- err
				return
			}
			done.Add(1)
		})
	}
	wg.Wait()
	shared.report(t, errs)
	if done.Load() != n {
		t.Errorf("%d of %d workers had their turn", done.Load(), n)
	}
}

// TestLocksOutliveABrokenSession: the database ends the session the
// process holds its locks on (a restart, a cut connection) while a worker
// holds a document. The next worker still gets its own document at once,
// the lost document is free for another replica, and the first worker's
// unlock does no harm.
func TestLocksOutliveABrokenSession(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := storetest.NewMigratedDatabase(t)
	replicas := openReplicas(ctx, t, url, 4)
	first, other := replicas[0], replicas[1]
	unlock, err := first.Lock(ctx, "arn:aws:s3:::lost")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var ended int
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_locks
WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&ended); err != nil || ended != 1 {
		t.Fatalf("ended %d sessions holding advisory locks (%v), want the one", ended, err)
	}

	next, err := first.Lock(ctx, "arn:aws:s3:::next")
	if err != nil {
		t.Fatalf("a lock after the session broke: %v", err)
	}
	defer next()
	taken := make(chan func(), 1)
	go func() {
		u, err := other.Lock(ctx, "arn:aws:s3:::lost")
		if err != nil {
			t.Error(err)
			u = func() {}
		}
		taken <- u
	}()
	select {
	case u := <-taken:
		u()
	case <-time.After(10 * time.Second):
		t.Fatal("the lost document stayed locked after its session ended")
	}
	unlock()
	again, err := other.Lock(ctx, "arn:aws:s3:::next-too")
	if err != nil {
		t.Fatal(err)
	}
	again()
}
