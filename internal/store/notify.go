package store

import (
	"context"
	"crypto/rand"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// workChannel is the LISTEN/NOTIFY channel that wakes idle workers.
const workChannel = "bucketbridge_work"

// eventsChannel is the LISTEN/NOTIFY channel that announces new events on
// requests' timelines; each notification names one request.
const eventsChannel = "bucketbridge_events"

// notifyEvery is the least time between two NOTIFY rounds of one channel
// in one process: a burst of new work needs one wake-up per replica, not
// one per request, and a burst of events on one request one per request.
const notifyEvery = 5 * time.Millisecond

// eventsEvery is notifyEvery for the events channel. Event streams are read
// by people and ticket automation, to whom 25 ms is nothing, while under
// load the events channel had a NOTIFY round every 5 ms, each a transaction
// whose commit Postgres serializes with every other NOTIFY. Streams on the
// process that wrote the events are woken at once, whatever the interval.
const eventsEvery = 25 * time.Millisecond

// relistenAfter is how long the listener waits before connecting again
// after its connection failed, and a notifier before sending again what it
// could not send.
const relistenAfter = time.Second

// maxUnsent bounds the keys a notifier keeps to send again while the
// database is away; beyond it they are dropped, and those waiting learn of
// their events when the listeners reconnect (which wakes everyone) or from
// their own rechecks.
const maxUnsent = 10_000

// notifier wakes whoever waits on one channel (idle workers when work
// becomes runnable, dispatchers when deliveries are queued, event streams
// when a request's timeline grows): those of this process at once, those
// of other replicas with a Postgres NOTIFY, which the replicas' listeners
// pass on. The NOTIFY is sent after the commit, on its own: Postgres
// serializes the commits of transactions that issued a NOTIFY.
//
// A notification may name a key (the request whose timeline grew); it
// wakes the subscribers to that key and those to every notification of
// the channel. Keys notified several times before the next NOTIFY round
// are sent once.
type notifier struct {
	pool    *pgxpool.Pool
	channel string
	// every is the least time between two NOTIFY rounds.
	every time.Duration
	// origin starts every payload this process sends, so that its own
	// listener skips them: its subscribers were woken when they were sent.
	origin string
	kick   chan struct{}
	stop   context.CancelFunc
	done   chan struct{}

	mu sync.Mutex
	// subs holds the subscribers by key; "" are those woken by every
	// notification of the channel.
	subs map[string][]chan struct{}
	// pending are the keys the next NOTIFY round sends; "" is a
	// notification without a key.
	pending map[string]struct{}
}

func newNotifier(pool *pgxpool.Pool, channel, origin string, every time.Duration) *notifier {
	ctx, stop := context.WithCancel(context.Background())
	n := &notifier{pool: pool, channel: channel, every: every, origin: origin, kick: make(chan struct{}, 1), stop: stop,
		done: make(chan struct{}), subs: map[string][]chan struct{}{}, pending: map[string]struct{}{}}
	go n.run(ctx)
	return n
}

// Notify wakes the subscribers of this process to keys (to every
// notification when keys is empty) and schedules a NOTIFY for each key.
func (n *notifier) Notify(keys ...string) {
	if len(keys) == 0 {
		keys = []string{""}
	}
	n.mu.Lock()
	for _, k := range keys {
		n.pending[k] = struct{}{}
		n.wakeLocked(k)
	}
	n.mu.Unlock()
	select {
	case n.kick <- struct{}{}:
	default: // one is already due
	}
}

// heard wakes this process's subscribers to a notification another
// process sent with payload.
func (n *notifier) heard(payload string) {
	origin, key, _ := strings.Cut(payload, " ")
	if origin == n.origin {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.wakeLocked(key)
}

// wakeAll wakes every subscriber, whatever its key: notifications may have
// been missed.
func (n *notifier) wakeAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, chs := range n.subs {
		wake(chs)
	}
}

func (n *notifier) wakeLocked(key string) {
	wake(n.subs[""])
	if key != "" {
		wake(n.subs[key])
	}
}

// wake gives each channel a value unless it holds one already: one
// pending wake-up says all there is to say.
func wake(chs []chan struct{}) {
	for _, ch := range chs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// subscribe returns a channel that receives a value whenever a
// notification of key ("" for every notification) is sent by this process
// or heard from another, until ctx ends.
func (n *notifier) subscribe(ctx context.Context, key string) <-chan struct{} {
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	n.subs[key] = append(n.subs[key], ch)
	n.mu.Unlock()
	context.AfterFunc(ctx, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		rest := slices.DeleteFunc(n.subs[key], func(c chan struct{}) bool { return c == ch })
		if len(rest) == 0 {
			delete(n.subs, key)
			return
		}
		n.subs[key] = rest
	})
	return ch
}

// run sends the pending notifications, one statement per round, until
// ctx ends; what a round could not send goes with the next one.
func (n *notifier) run(ctx context.Context) {
	defer close(n.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.kick:
		}
		for {
			sent := n.send(ctx)
			wait := n.every
			if !sent {
				wait = relistenAfter
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			if sent {
				break
			}
		}
	}
}

// send sends the pending notifications in one statement and reports
// whether it could; when not, it keeps them for the next round.
func (n *notifier) send(ctx context.Context) bool {
	n.mu.Lock()
	keys := slices.Sorted(maps.Keys(n.pending))
	clear(n.pending)
	n.mu.Unlock()
	payloads := make([]string, len(keys))
	for i, k := range keys {
		payloads[i] = strings.TrimSpace(n.origin + " " + k)
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := n.pool.Exec(sctx, "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", n.channel, payloads); err != nil {
		n.mu.Lock()
		defer n.mu.Unlock()
		for _, k := range keys {
			if len(n.pending) >= maxUnsent {
				break
			}
			n.pending[k] = struct{}{}
		}
		return false
	}
	return true
}

func (n *notifier) close() {
	n.stop()
	<-n.done
}

// listener is the one LISTEN connection of a store: it listens on every
// notifier's channel and passes what it hears to that notifier. It starts
// with the first subscription.
type listener struct {
	pool     *pgxpool.Pool
	channels map[string]*notifier

	mu      sync.Mutex
	started bool
	closed  bool
	stop    context.CancelFunc
	done    chan struct{}
}

func newListener(pool *pgxpool.Pool, notifiers ...*notifier) *listener {
	l := &listener{pool: pool, channels: map[string]*notifier{}, done: make(chan struct{})}
	for _, n := range notifiers {
		l.channels[n.channel] = n
	}
	return l
}

// ensure starts listening unless the listener runs or is closed.
func (l *listener) ensure() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started || l.closed {
		return
	}
	l.started = true
	ctx, stop := context.WithCancel(context.Background())
	l.stop = stop
	go l.run(ctx)
}

func (l *listener) close() {
	l.mu.Lock()
	started := l.started
	l.closed = true
	l.mu.Unlock()
	if started {
		l.stop()
		<-l.done
	}
}

// run keeps a LISTEN connection until ctx ends. Notifications sent while
// no connection listens are lost, so when a connection that listened
// fails, and again when a new one listens, every subscriber is woken to
// look for itself: a worker claims, a stream reads its timeline (and ends
// when the database is gone).
func (l *listener) run(ctx context.Context) {
	defer close(l.done)
	first := true
	for {
		listened := l.session(ctx, func() {
			if !first {
				l.wakeAll()
			}
			first = false
		})
		if ctx.Err() != nil {
			return
		}
		if listened {
			l.wakeAll()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(relistenAfter):
		}
	}
}

func (l *listener) wakeAll() {
	for _, n := range l.channels {
		n.wakeAll()
	}
}

// session listens on one connection until it fails or ctx ends, calling
// listening once the LISTEN is in place; it reports whether it was.
func (l *listener) session(ctx context.Context, listening func()) bool {
	conn, err := l.pool.Acquire(ctx)
	if err != nil {
		return false
	}
	// The connection carries a LISTEN, so it never goes back to the pool.
	pc := conn.Hijack()
	defer pc.Close(context.Background())
	var stmts []string
	for _, ch := range slices.Sorted(maps.Keys(l.channels)) {
		stmts = append(stmts, "LISTEN "+pgx.Identifier{ch}.Sanitize())
	}
	if _, err := pc.Exec(ctx, strings.Join(stmts, "; ")); err != nil {
		return false
	}
	listening()
	for {
		msg, err := pc.WaitForNotification(ctx)
		if err != nil {
			return true
		}
		if n := l.channels[msg.Channel]; n != nil {
			n.heard(msg.Payload)
		}
	}
}

// newOrigin returns a random mark for this store's notifications.
func newOrigin() string { return rand.Text()[:12] }

// Wake delivers a value whenever a request becomes runnable, in this
// process or (through LISTEN) in another, until ctx ends.
func (s *Store) Wake(ctx context.Context) <-chan struct{} {
	s.listener.ensure()
	return s.wake.subscribe(ctx, "")
}

// DeliveriesWake delivers a value whenever deliveries are queued, in this
// process or (through LISTEN on DeliveriesChannel) in another, until ctx
// ends; it is the webhook dispatcher's wake-up.
func (s *Store) DeliveriesWake(ctx context.Context) <-chan struct{} {
	s.listener.ensure()
	return s.deliveries.subscribe(ctx, "")
}

// EventsWake delivers a value whenever events may have been added to
// request id's timeline, until ctx ends: at once when this process added
// them, and through the store's one LISTEN connection when another replica
// did; also when that connection fails or comes back, since notifications
// may have been missed. Every event stream of the process shares that
// connection, so following a request costs the database nothing while its
// timeline does not change. A value says "read the timeline", nothing
// more: a caller reads the events after the last one it has.
func (s *Store) EventsWake(ctx context.Context, id string) <-chan struct{} {
	s.listener.ensure()
	return s.events.subscribe(ctx, canonicalID(id))
}
