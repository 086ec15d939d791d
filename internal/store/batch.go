package store

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// maxBatch bounds the statements of one batch: each holds its row's lock
// until the batch commits.
const maxBatch = 64

// maxFlushes bounds the batches in flight at once. Below it a record is
// sent the moment it is written, as it would be alone; at it, records
// queue and go together in the next batch to leave.
const maxFlushes = 2

// batcher sends the records that workers write at the same moment (the
// starts and ends of steps, the grants written into shared documents) in
// one round trip and one commit. Under load most of what Postgres spends
// on a record is the transaction around it (the commit, its WAL flush, the
// round trip), not the record itself. A statement is sent at once unless
// maxFlushes batches are in flight already, so a lone worker waits no
// longer than before; under load, statements queue and share a commit.
//
// A batch runs as one implicit transaction. When Postgres refuses one of
// its statements it undoes them all, and the batcher then runs each
// statement on its own, so that one bad statement fails only its caller.
type batcher struct {
	pool *pgxpool.Pool

	mu      sync.Mutex
	pending []*batched
	flushes int // batches being sent
}

// batched is one queued statement: read takes its result from the batch,
// and its error is the caller's (a lease found lost is an answer, not a
// refusal). key (the request, or the first document, it writes) orders
// the statements of a batch, so that batches lock rows in one order.
type batched struct {
	ctx  context.Context
	key  string
	sql  string
	args []any
	read func(pgx.BatchResults) error
	done chan error
}

func newBatcher(pool *pgxpool.Pool) *batcher { return &batcher{pool: pool} }

// do runs one statement in the next batch and waits until that batch has
// committed or failed, or until ctx ends; read receives the statement's
// result.
func (b *batcher) do(ctx context.Context, key, sql string, args []any, read func(pgx.BatchResults) error) error {
	it := &batched{ctx: ctx, key: key, sql: sql, args: args, read: read, done: make(chan error, 1)}
	b.mu.Lock()
	b.pending = append(b.pending, it)
	start := b.flushes < maxFlushes
	if start {
		b.flushes++
	}
	b.mu.Unlock()
	if start {
		go b.flush()
	}
	select {
	case err := <-it.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flush sends what is queued, one batch at a time, until nothing is.
func (b *batcher) flush() {
	for {
		b.mu.Lock()
		n := min(len(b.pending), maxBatch)
		if n == 0 {
			b.flushes--
			b.mu.Unlock()
			return
		}
		items := slices.Clone(b.pending[:n])
		b.pending = slices.Delete(b.pending, 0, n)
		b.mu.Unlock()
		b.send(items)
	}
}

// send runs items as one batch, or each on its own when Postgres refused
// the batch, and tells each caller its statement's outcome. Statements
// whose callers stopped waiting before they were sent are dropped.
func (b *batcher) send(items []*batched) {
	items = slices.DeleteFunc(items, func(it *batched) bool {
		if err := it.ctx.Err(); err != nil {
			it.done <- err
			return true
		}
		return false
	})
	slices.SortStableFunc(items, func(x, y *batched) int { return cmp.Compare(x.key, y.key) })
	errs, refused := b.run(items)
	if refused && len(items) > 1 {
		for _, it := range items {
			errs, _ := b.run([]*batched{it})
			it.done <- errs[0]
		}
		return
	}
	for i, it := range items {
		it.done <- errs[i]
	}
}

// run sends items in one batch and returns each one's error. refused says
// that Postgres rejected a statement or the commit, which undid them all.
func (b *batcher) run(items []*batched) (errs []error, refused bool) {
	errs = make([]error, len(items))
	if len(items) == 0 {
		return errs, false
	}
	ctx, done := whileAnyWaits(items)
	defer done()
	batch := &pgx.Batch{}
	for _, it := range items {
		batch.Queue(it.sql, it.args...)
	}
	br := b.pool.SendBatch(ctx, batch)
	for i, it := range items {
		errs[i] = it.read(br)
		refused = refused || rejected(errs[i])
	}
	if err := br.Close(); err != nil {
		refused = refused || rejected(err)
		for i := range errs {
			errs[i] = cmp.Or(errs[i], err)
		}
	}
	return errs, refused
}

// rejected reports whether err is Postgres refusing a statement, as
// opposed to an answer (no row) or the database being out of reach.
func rejected(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && !unreachable(err)
}

// whileAnyWaits returns a context that ends once every item's caller has
// stopped waiting (a batch is given up only when nobody needs it), and
// the function that releases it when the batch is over.
func whileAnyWaits(items []*batched) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var waiting atomic.Int64
	waiting.Store(int64(len(items)))
	stops := make([]func() bool, len(items))
	for i, it := range items {
		stops[i] = context.AfterFunc(it.ctx, func() {
			if waiting.Add(-1) == 0 {
				cancel()
			}
		})
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}
