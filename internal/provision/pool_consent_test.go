package provision_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketbridge/bucketbridge/internal/policy"
	"github.com/bucketbridge/bucketbridge/internal/provision"
)

// TestEngineRunsOnlyWhatTheDestinationOwnerApproved runs the real step
// tables through the real worker pool: requests awaiting approval are never
// claimed and write nothing into either account, while a request after
// them runs; an approved one then runs to succeeded, and a rejected one
// ends without a step.
func TestEngineRunsOnlyWhatTheDestinationOwnerApproved(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEngineEnv(t)
	withPrefix := func(p string) provision.Spec {
		s := demoSpec()
		s.Rule.Prefix = p
		return s
	}
	submit := func(s provision.Spec, needsApproval bool) provision.Replication {
		t.Helper()
		r, _, err := e.st.Create(ctx, provision.NewReplication{Spec: s, RequestedBy: "token:alice", NeedsApproval: needsApproval})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Created first, so a pool that took them at all would take them
	// before the control request.
	approved := submit(withPrefix("approved/"), true)
	rejected := submit(withPrefix("rejected/"), true)
	control := submit(withPrefix("control/"), false)
	e.startEngine(t, e.st, provision.PoolConfig{Workers: 1})
	waitEnd(t, e.st, control.ID, provision.StateSucceeded)

	src := demoSpec().Source
	rules := func() []string {
		t.Helper()
		var ids []string
		if c := e.replication(t, srcAcct, src.Region, src.Bucket); c != nil {
			for _, r := range c.Rules {
				ids = append(ids, r.ID)
			}
		}
		slices.Sort(ids)
		return ids
	}
	untouched := func(id string, state provision.State) {
		t.Helper()
		r, err := e.st.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != state {
			t.Errorf("request %s is %s, want %s", id, r.State, state)
		}
		if steps := stepStatuses(t, e.st, id); len(steps) != 0 {
			t.Errorf("request %s ran steps %v without the destination owner's consent", id, steps)
		}
	}
	untouched(approved.ID, provision.StateAwaitingApproval)
	untouched(rejected.ID, provision.StateAwaitingApproval)
	if diff := cmp.Diff([]string{policy.RuleID(control.ID)}, rules()); diff != "" {
		t.Errorf("rules on demo-source while two requests await approval (-want +got):\n%s", diff)
	}

	if _, err := e.st.Reject(ctx, rejected.ID, "token:bob", "not into demo-destination"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Approve(ctx, approved.ID, "token:bob"); err != nil {
		t.Fatal(err)
	}
	waitEnd(t, e.st, approved.ID, provision.StateSucceeded)
	untouched(rejected.ID, provision.StateRejected)
	if diff := cmp.Diff(sorted(policy.RuleID(approved.ID), policy.RuleID(control.ID)), rules()); diff != "" {
		t.Errorf("rules on demo-source after one approval and one rejection (-want +got):\n%s", diff)
	}
	events, err := e.st.Events(ctx, approved.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, ev := range events {
		if ev.Type == provision.EventState {
			states = append(states, string(ev.State))
		}
	}
	if diff := cmp.Diff([]string{"awaiting_approval", "pending", "running", "succeeded"}, states); diff != "" {
		t.Errorf("states of the approved request (-want +got):\n%s", diff)
	}
	var se *provision.StateError
	if _, err := e.st.Deprovision(ctx, rejected.ID, "token:alice"); !errors.As(err, &se) {
		t.Errorf("deprovisioning the rejected request = %v, want a StateError: it wrote nothing", err)
	}

	e.deprovision(t, approved.ID)
	e.deprovision(t, control.ID)
	waitEnd(t, e.st, approved.ID, provision.StateDeprovisioned)
	waitEnd(t, e.st, control.ID, provision.StateDeprovisioned)
	e.checkClean(t, demoSpec())
}
