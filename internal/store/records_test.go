package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

// TestStepRecordsWrittenAtOnceEachHaveTheirOwnOutcome: many workers record
// steps at the same moment, and the records that reach Postgres together
// still answer one by one. A record whose lease was lost is refused with
// ErrLeaseLost, a record Postgres rejects fails alone, a request a caller
// asked to cancel hears so, and every other record lands with its event,
// numbered in order within its request.
func TestStepRecordsWrittenAtOnceEachHaveTheirOwnOutcome(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	const n, rounds = 24, 4
	claims := make([]provision.Claim, n)
	for i := range n {
		if _, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(i + 1), RequestedBy: "t"}); err != nil {
			t.Fatal(err)
		}
		c, ok, err := s.Claim(ctx, fmt.Sprintf("w%d", i), time.Minute)
		if err != nil || !ok {
			t.Fatalf("claim %d: %v %v", i, ok, err)
		}
		claims[i] = c
	}
	const lost, broken, cancelled = 0, 1, 2
	if err := s.Release(ctx, &claims[lost]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Cancel(ctx, claims[cancelled].Replication.ID, "token:t"); err != nil {
		t.Fatal(err)
	}

	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			c := &claims[i]
			for r := range rounds {
				step := fmt.Sprintf("step-%d", r)
				err := s.StartSteps(ctx, c, step)
				if i == lost {
					if !errors.Is(err, provision.ErrLeaseLost) {
						t.Errorf("starting a step of a request whose lease was lost: %v, want ErrLeaseLost", err)
					}
					continue
				}
				if err != nil {
					t.Errorf("request %d, %s: start: %v", i, step, err)
					return
				}
				rec := provision.StepRecord{Phase: provision.PhaseProvision, Name: step, Status: provision.StepSucceeded}
				if i == broken {
					rec.Status, rec.Error = provision.StepFailed, json.RawMessage(`{"not json`)
				}
				asked, err := s.FinishStep(ctx, c, rec, provision.Facts{})
				switch {
				case i == broken && err == nil:
					t.Errorf("a record Postgres cannot store was accepted")
				case i != broken && err != nil:
					t.Errorf("request %d, %s: finish: %v", i, step, err)
				case asked != (i == cancelled):
					t.Errorf("request %d, %s: cancel requested %v, want %v", i, step, asked, i == cancelled)
				}
			}
		})
	}
	close(start)
	wg.Wait()

	for i, c := range claims {
		steps, err := s.Steps(ctx, c.Replication.ID)
		if err != nil {
			t.Fatal(err)
		}
		events, err := s.Events(ctx, c.Replication.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		var stepEvents int
		for j, e := range events {
			if e.Seq != int64(j+1) {
				t.Errorf("request %d: event %d has number %d, want %d", i, j, e.Seq, j+1)
			}
			if e.Type == provision.EventStep {
				stepEvents++
			}
		}
		wantSteps, wantEvents, wantStatus := rounds, rounds, provision.StepSucceeded
		switch i {
		case lost:
			wantSteps, wantEvents = 0, 0
		case broken:
			wantEvents, wantStatus = 0, provision.StepRunning
		}
		if len(steps) != wantSteps || stepEvents != wantEvents {
			t.Errorf("request %d: %d steps and %d step events, want %d and %d", i, len(steps), stepEvents, wantSteps, wantEvents)
		}
		for _, st := range steps {
			if st.Status != wantStatus {
				t.Errorf("request %d: step %s is %s, want %s", i, st.Name, st.Status, wantStatus)
			}
		}
	}
}
