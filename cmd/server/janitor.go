package main

import (
	"context"
	"log/slog"
	"time"
)

// sweepBatch is how many expired Idempotency-Keys one statement deletes:
// short transactions, which never hold many row locks or much WAL at once.
const sweepBatch = 1000

// sweepPause separates two full batches, so that a long backlog (the first
// sweep of a table never swept) is deleted at a pace that leaves the
// database to the requests.
const sweepPause = 50 * time.Millisecond

// maxSweepEvery is how often, at most, a replica looks for expired keys.
const maxSweepEvery = 10 * time.Minute

// sweepEvery is how often a replica forgets expired Idempotency-Keys:
// every ten minutes, or sooner with a TTL shorter than that.
func sweepEvery(ttl time.Duration) time.Duration { return min(ttl, maxSweepEvery) }

// keyForgetter deletes expired Idempotency-Keys, at most limit at a time.
type keyForgetter interface {
	ForgetExpiredIdempotencyKeys(ctx context.Context, limit int) (int64, error)
}

// forgetIdempotencyKeys is the janitor of Idempotency-Keys: every interval
// until ctx ends it deletes the expired ones, batch after batch. An expired
// key is already treated as new; deleting it only keeps the table from
// growing for ever. Every replica runs one; they share the work.
func forgetIdempotencyKeys(ctx context.Context, st keyForgetter, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := sweep(ctx, st, sweepBatch)
		switch {
		case err != nil && ctx.Err() == nil:
			log.WarnContext(ctx, "forget expired idempotency keys", "error", err, "forgotten", n)
		case n > 0:
			log.InfoContext(ctx, "forgot expired idempotency keys", "forgotten", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweep deletes expired keys in batches of batch until a batch comes back
// short, and returns how many it deleted.
func sweep(ctx context.Context, st keyForgetter, batch int) (int64, error) {
	var total int64
	for {
		n, err := st.ForgetExpiredIdempotencyKeys(ctx, batch)
		total += n
		if err != nil || n < int64(batch) {
			return total, err
		}
		select {
		case <-ctx.Done():
			return total, nil
		case <-time.After(sweepPause):
		}
	}
}
