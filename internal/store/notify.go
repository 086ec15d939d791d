package store

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// workChannel is the LISTEN/NOTIFY channel that wakes idle workers.
const workChannel = "bucketbridge_work"

// notifyEvery is the least time between two NOTIFYs of one process: a burst
// of new work needs one wake-up per replica, not one per request.
const notifyEvery = 5 * time.Millisecond

// notifier wakes whoever waits on one channel (idle workers when work
// becomes runnable, dispatchers when deliveries are queued): those of this
// process at once, those of other replicas with a Postgres NOTIFY. The
// NOTIFY is sent after the commit, on its own: Postgres serializes the
// commits of transactions that issued a NOTIFY.
type notifier struct {
	pool    *pgxpool.Pool
	channel string
	kick    chan struct{}
	stop    context.CancelFunc
	done    chan struct{}

	mu   sync.Mutex
	subs []chan struct{}
}

func newNotifier(pool *pgxpool.Pool, channel string) *notifier {
	ctx, stop := context.WithCancel(context.Background())
	n := &notifier{pool: pool, channel: channel, kick: make(chan struct{}, 1), stop: stop, done: make(chan struct{})}
	go n.run(ctx)
	return n
}

// Notify wakes every subscriber and schedules a NOTIFY.
func (n *notifier) Notify() {
	n.local()
	select {
	case n.kick <- struct{}{}:
	default: // one is already due
	}
}

func (n *notifier) local() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, ch := range n.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// subscribe returns a channel that receives a value whenever this process
// notifies, until ctx ends.
func (n *notifier) subscribe(ctx context.Context) chan struct{} {
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	n.subs = append(n.subs, ch)
	n.mu.Unlock()
	context.AfterFunc(ctx, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		for i, c := range n.subs {
			if c == ch {
				n.subs = append(n.subs[:i], n.subs[i+1:]...)
				break
			}
		}
	})
	return ch
}

func (n *notifier) run(ctx context.Context) {
	defer close(n.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.kick:
		}
		// A lost NOTIFY only delays other replicas until their next poll.
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n.pool.Exec(sctx, "SELECT pg_notify($1, '')", n.channel) //nolint:errcheck // polling covers a lost wake-up
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-time.After(notifyEvery):
		}
	}
}

func (n *notifier) close() {
	n.stop()
	<-n.done
}

// Wake delivers a value whenever a request becomes runnable, in this
// process or (through LISTEN) in another, until ctx ends.
func (s *Store) Wake(ctx context.Context) <-chan struct{} { return s.follow(ctx, s.wake) }

// DeliveriesWake delivers a value whenever deliveries are queued, in this
// process or (through LISTEN on DeliveriesChannel) in another, until ctx
// ends; it is the webhook dispatcher's wake-up.
func (s *Store) DeliveriesWake(ctx context.Context) <-chan struct{} {
	return s.follow(ctx, s.deliveries)
}

// follow subscribes to n in this process and LISTENs on its channel for
// the other replicas, until ctx ends. When the listening connection fails
// it reconnects; polling covers the gap.
func (s *Store) follow(ctx context.Context, n *notifier) <-chan struct{} {
	ch := n.subscribe(ctx)
	go func() {
		for ctx.Err() == nil {
			s.listen(ctx, n.channel, ch)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	return ch
}

func (s *Store) listen(ctx context.Context, channel string, ch chan<- struct{}) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return
	}
	// The connection carries a LISTEN, so it never goes back to the pool.
	pc := conn.Hijack()
	defer pc.Close(context.Background())
	if _, err := pc.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return
	}
	for {
		if _, err := pc.WaitForNotification(ctx); err != nil {
			return
		}
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
