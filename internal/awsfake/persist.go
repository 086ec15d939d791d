package awsfake

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Keeping the world (Config.SaveFunc).
//
// A process that records what it did to AWS (bucketbridge records every
// step) must never find, after a crash, an AWS older than its records: a
// role its records say exists, gone. So a call answers only once a
// snapshot holding the world as the call left it, or as it found it, is
// saved: a change that was not saved was never answered, and whoever made
// it recorded nothing and will make it again.
//
// Every change of the world counts one generation (Cloud.gen, under the
// Cloud's lock). One save runs at a time, in a goroutine of its own: it
// takes the snapshot under the lock, with the generation it holds, and
// stores it outside the lock, so calls go on meanwhile. Callers waiting for
// a generation the running save does not hold start the next save when it
// ends, which then holds every change made while the previous one ran: many
// workers changing the world at once share saves instead of queueing one
// each. A read waits only when it saw a change that is not saved yet,
// which is rare, since that change's own call is waiting for the same save.

// saveTimeout bounds one save, whoever waits for it.
const saveTimeout = 30 * time.Second

// saver keeps the world through Config.SaveFunc.
type saver struct {
	save func(ctx context.Context, snapshot []byte) error

	mu sync.Mutex
	// saved is the newest generation SaveFunc stored.
	saved uint64
	// running is the save under way, nil when none is.
	running *saveRun
	// kicked: a change nobody waits for came while a save was running,
	// which may not hold it; the next save starts when that one ends.
	kicked bool
}

// saveRun is one save: the generation it holds and how it ended, both
// readable once done is closed.
type saveRun struct {
	done chan struct{}
	gen  uint64
	err  error
}

// changes reports whether an operation may change the world the fake keeps.
// Reads do not; nor does AssumeRole, whose sessions live only as long as the
// process holding their credentials.
func changes(op string) bool {
	for _, read := range []string{"Get", "List", "Head", "Describe"} {
		if strings.HasPrefix(op, read) {
			return false
		}
	}
	return op != "AssumeRole"
}

// Flush waits until everything the world holds now is saved through
// Config.SaveFunc, starting a save when needed. Without a SaveFunc it
// returns at once.
func (c *Cloud) Flush(ctx context.Context) error {
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	return c.waitSaved(ctx, gen)
}

// waitSaved returns once generation gen is saved, or with the error of a
// save that held it, or when ctx ends.
func (c *Cloud) waitSaved(ctx context.Context, gen uint64) error {
	s := c.saver
	if s == nil {
		return nil
	}
	for {
		s.mu.Lock()
		if s.saved >= gen {
			s.mu.Unlock()
			return nil
		}
		run := s.running
		if run == nil {
			run = c.startSaveLocked(ctx)
		}
		s.mu.Unlock()
		select {
		case <-run.done:
		case <-ctx.Done():
			return fmt.Errorf("awsfake: wait for the world to be saved: %w", ctx.Err())
		}
		// A save that started before gen existed holds less: the loop
		// starts the next one, which holds gen.
		if run.err != nil && run.gen >= gen {
			return fmt.Errorf("awsfake: save the world: %w", run.err)
		}
	}
}

// kickSave starts a save when changes are unsaved and none is under way,
// for changes nobody waits for (a replication deciding in the background):
// they are saved soon, and by the next save at the latest.
func (c *Cloud) kickSave() {
	s := c.saver
	if s == nil {
		return
	}
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.saved >= gen:
	case s.running == nil:
		c.startSaveLocked(context.Background())
	default:
		s.kicked = true
	}
}

// startSaveLocked starts a save; the caller holds c.saver.mu. The save
// outlives the context of whoever started it, since others may be waiting
// for it.
func (c *Cloud) startSaveLocked(ctx context.Context) *saveRun {
	s := c.saver
	run := &saveRun{done: make(chan struct{})}
	s.running = run
	go func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
		defer cancel()
		c.mu.Lock()
		snap := c.snapshotLocked()
		run.gen = c.gen
		c.mu.Unlock()
		data, err := json.Marshal(snap)
		if err == nil {
			err = s.save(ctx, data)
		}
		run.err = err
		s.mu.Lock()
		if err == nil && run.gen > s.saved {
			s.saved = run.gen
		}
		s.running = nil
		if s.kicked {
			s.kicked = false
			c.startSaveLocked(context.Background())
		}
		s.mu.Unlock()
		close(run.done)
	}()
	return run
}
