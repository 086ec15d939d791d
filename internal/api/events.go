package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/bucketbridge/bucketbridge/internal/authz"
	"github.com/bucketbridge/bucketbridge/internal/provision"
)

// Defaults of the event streams' bounds; the server's configuration starts
// from the same values.
const (
	// DefaultStreamsPerCaller is how many event streams one caller may hold
	// open at once in one process: a portal page or two, a few terminals.
	DefaultStreamsPerCaller = 10
	// DefaultStreams is how many event streams one process holds open at
	// once, whoever the callers are. An idle stream costs a goroutine, a
	// socket and a heartbeat, and nothing in the database.
	DefaultStreams = 500
	// DefaultStreamLifetime ends every event stream after it, so that no
	// stream outlives the credentials it was opened with by much (a
	// grants change is applied at once, but a token is checked when the
	// stream opens) and load spreads again across replicas; an EventSource
	// reconnects with Last-Event-ID and misses nothing.
	DefaultStreamLifetime = 15 * time.Minute
	// DefaultStreamHeartbeat is how often a stream sends a comment line:
	// proxies and load balancers commonly close connections idle for 60 s
	// (AWS's Application Load Balancer by default), and a client learns
	// that the stream is alive.
	DefaultStreamHeartbeat = 15 * time.Second
	// DefaultStreamRecheck is how often a stream reads its timeline without
	// being woken, in case a notification was lost. The store wakes every
	// stream itself when its listening connection fails or comes back, and
	// sends again a NOTIFY it could not send, so this only covers one lost
	// with the replica that was to send it. Two reads a stream every 30 s:
	// 100 idle streams cost about 7 transactions a second.
	DefaultStreamRecheck = 30 * time.Second
)

// streamReaders is how many streams of a process read their timelines at
// once. An event on a request followed by hundreds of streams wakes them
// all; queued here, their reads take a few of the database connections
// and leave the rest to the workers and the other API requests.
const streamReaders = 4

// streamRetryAfter is the Retry-After of a stream refused at a cap:
// streams end all the time (their request finishes, their lifetime ends).
const streamRetryAfter = 10 * time.Second

// streamSet counts the open event streams, per caller and in all, and
// ends them all at once on shutdown.
type streamSet struct {
	perCaller, max int
	lifetime       time.Duration
	heartbeat      time.Duration
	recheck        time.Duration
	// closed is closed when the server shuts down: every stream ends.
	closed chan struct{}
	// readers holds a token per timeline read under way.
	readers   chan struct{}
	closeOnce sync.Once

	mu     sync.Mutex
	open   map[string]int
	total  int
	onOpen func(delta float64) // metrics
}

func newStreamSet(cfg Config, onOpen func(float64)) (*streamSet, error) {
	set := &streamSet{
		perCaller: cfg.StreamsPerCaller, max: cfg.Streams,
		lifetime: cfg.StreamLifetime, heartbeat: cfg.StreamHeartbeat, recheck: cfg.StreamRecheck,
		closed: make(chan struct{}), readers: make(chan struct{}, streamReaders), open: map[string]int{}, onOpen: onOpen,
	}
	if set.perCaller == 0 {
		set.perCaller = DefaultStreamsPerCaller
	}
	if set.max == 0 {
		set.max = DefaultStreams
	}
	if set.lifetime == 0 {
		set.lifetime = DefaultStreamLifetime
	}
	if set.heartbeat == 0 {
		set.heartbeat = DefaultStreamHeartbeat
	}
	if set.recheck == 0 {
		set.recheck = DefaultStreamRecheck
	}
	if set.perCaller < 0 || set.max < 0 || set.lifetime < 0 || set.heartbeat < 0 || set.recheck < 0 {
		return nil, errors.New("api: the event stream bounds must not be negative")
	}
	return set, nil
}

// acquire opens a stream for caller, or says why it may not be opened.
func (set *streamSet) acquire(caller string) (release func(), refused *problem) {
	set.mu.Lock()
	defer set.mu.Unlock()
	select {
	case <-set.closed:
		return nil, &problem{Type: problemTypeBase + "shutting-down", Status: http.StatusServiceUnavailable,
			Title: "Service Unavailable", Detail: "the server is shutting down; reconnect, with Last-Event-ID, to another replica or in a moment"}
	default:
	}
	switch {
	case set.open[caller] >= set.perCaller:
		return nil, &problem{Type: problemTypeBase + "too-many-streams", Status: http.StatusTooManyRequests,
			Title: "Too Many Requests", Detail: fmt.Sprintf(
				"you already follow %d event streams, the most one caller may; close one, or poll GET …/events?after=<last id>", set.perCaller)}
	case set.total >= set.max:
		return nil, &problem{Type: problemTypeBase + "too-many-streams", Status: http.StatusTooManyRequests,
			Title: "Too Many Requests", Detail: fmt.Sprintf(
				"the server already holds %d event streams, the most it holds; try again later, or poll GET …/events?after=<last id>", set.max)}
	}
	set.open[caller]++
	set.total++
	set.onOpen(1)
	var once sync.Once
	return func() {
		once.Do(func() {
			set.mu.Lock()
			defer set.mu.Unlock()
			if set.open[caller]--; set.open[caller] == 0 {
				delete(set.open, caller)
			}
			set.total--
			set.onOpen(-1)
		})
	}, nil
}

// CloseStreams ends every event stream at once and refuses new ones; the
// server calls it when shutdown begins (http.Server.RegisterOnShutdown),
// so that open streams do not hold shutdown for its whole grace period.
// Clients reconnect with Last-Event-ID, to another replica or to this one
// once it is back.
func (s *Server) CloseStreams() {
	s.streaming.closeOnce.Do(func() { close(s.streaming.closed) })
}

// eventList is the body of GET /v1/replications/{id}/events.
type eventList struct {
	Items []eventJSON `json:"items"`
}

func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) {
	var after int64
	if v := r.URL.Query().Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			s.fail(w, r, badRequest("after", "must be an event id (a whole number, 0 or more)"))
			return
		}
		after = n
	}
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		// A reconnecting EventSource resumes where it stopped.
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > after {
			after = n
		}
	}
	if s.streams(r) {
		s.followEvents(w, r, after)
		return
	}
	rep, ok := s.authorize(w, r, authz.ActionRead)
	if !ok {
		return
	}
	events, err := s.store.Events(r.Context(), rep.ID, after)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := eventList{Items: make([]eventJSON, len(events))}
	for i, e := range events {
		out.Items[i] = eventOf(e)
	}
	writeJSON(w, http.StatusOK, out)
}

// followEvents streams a request's timeline after event after as
// server-sent events, each with its id so that an EventSource resumes with
// Last-Event-ID. The stream ends when the request is finished, the caller
// may no longer see it, the client goes away, the database cannot be read,
// its lifetime is over, or the server shuts down.
//
// It costs the database nothing while the timeline does not change: the
// store wakes the stream when events are added (in this process or, by
// one shared LISTEN, in another), and the stream then reads what is new.
// Between events it sends a comment as a heartbeat.
func (s *Server) followEvents(w http.ResponseWriter, r *http.Request, after int64) {
	// The caps come first: refusing a flood must cost nothing.
	release, refused := s.streaming.acquire(callerFrom(r.Context()))
	if refused != nil {
		w.Header().Set("Retry-After", strconv.Itoa(int(streamRetryAfter.Seconds())))
		s.problem(w, r, refused)
		return
	}
	defer release()
	ctx, stop := context.WithCancel(r.Context())
	defer stop()
	dctx, cancel := context.WithTimeout(ctx, s.dbTimeout)
	rep, ok := s.authorize(w, r.WithContext(dctx), authz.ActionRead)
	cancel()
	if !ok {
		return
	}
	// Woken from here on, so that nothing added after the first read is
	// missed.
	wake := s.store.EventsWake(ctx, rep.ID)
	events, err := s.readEvents(ctx, rep.ID, after)
	if err != nil {
		if ctx.Err() == nil { // else the client went away: no one to answer
			s.fail(w, r, err)
		}
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)

	// The request's state as of the first read; every later change of
	// state is a state event, so the events say when it is finished.
	state := rep.State
	visible := func() bool {
		// Grants are asked again each time: a caller whose grants were
		// withdrawn stops following at once. A request's accounts never
		// change, so this needs no database.
		return s.grants().Visible(identityFrom(ctx), rep.Source.AccountID, rep.Destination.AccountID)
	}
	end := time.NewTimer(s.streaming.lifetime)
	defer end.Stop()
	beat := time.NewTicker(s.streaming.heartbeat)
	defer beat.Stop()
	recheck := time.NewTicker(s.streaming.recheck)
	defer recheck.Stop()
	for {
		for _, e := range events {
			data, err := json.Marshal(eventOf(e))
			if err != nil {
				return
			}
			if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Seq, e.Type, data); err != nil {
				return
			}
			after = e.Seq
			if e.Type == provision.EventState {
				state = e.State
			}
		}
		if err := rc.Flush(); err != nil {
			return
		}
		// A finished request's last events are written with the change
		// that finished it, and have been sent.
		if state.Terminal() {
			return
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.streaming.closed:
				return
			case <-end.C:
				return
			case <-beat.C:
				if !visible() {
					return
				}
				if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
					return
				}
				if err := rc.Flush(); err != nil {
					return
				}
			case <-wake:
				break wait
			case <-recheck.C:
				break wait
			}
		}
		if !visible() {
			return
		}
		if events, err = s.readEvents(ctx, rep.ID, after); err != nil {
			// The stream ends cleanly; the client resumes with
			// Last-Event-ID once the database is back.
			s.log.WarnContext(ctx, "event stream ended: its timeline cannot be read", "replication_id", rep.ID, "error", err)
			return
		}
	}
}

// readEvents reads id's events after after, within the database timeout,
// once it is its turn among the streams.
func (s *Server) readEvents(ctx context.Context, id string, after int64) ([]provision.Event, error) {
	select {
	case s.streaming.readers <- struct{}{}:
		defer func() { <-s.streaming.readers }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	ctx, cancel := context.WithTimeout(ctx, s.dbTimeout)
	defer cancel()
	return s.store.Events(ctx, id, after)
}
