package provision

import (
	"os"
	"strings"
	"testing"
)

func TestEveryStateIsReachableAndReachesATerminalState(t *testing.T) {
	t.Parallel()
	reachable := map[State]bool{}
	queue := []State{""}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		for _, tr := range outOf(s) {
			if !tr.To.Valid() {
				t.Fatalf("%q -%s-> %q: not a state", s, tr.Action, tr.To)
			}
			if !reachable[tr.To] {
				reachable[tr.To] = true
				queue = append(queue, tr.To)
			}
		}
	}
	for _, s := range States {
		if !reachable[s] {
			t.Errorf("no transition leads into state %s", s)
		}
		if !reachesTerminal(s) {
			t.Errorf("state %s cannot reach a terminal state", s)
		}
	}
}

func reachesTerminal(start State) bool {
	seen := map[State]bool{start: true}
	queue := []State{start}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		if s.Terminal() {
			return true
		}
		for _, tr := range outOf(s) {
			if !seen[tr.To] {
				seen[tr.To] = true
				queue = append(queue, tr.To)
			}
		}
	}
	return false
}

func TestTransitionsAreAFunctionOfStateAndAction(t *testing.T) {
	t.Parallel()
	seen := map[[2]string]State{}
	for _, tr := range Transitions {
		k := [2]string{string(tr.From), string(tr.Action)}
		if prev, dup := seen[k]; dup {
			t.Errorf("%q -%s-> leads to both %s and %s", tr.From, tr.Action, prev, tr.To)
		}
		seen[k] = tr.To
		if got, ok := Next(tr.From, tr.Action); !ok || got != tr.To {
			t.Errorf("Next(%q, %s) = %q, %v; want %s", tr.From, tr.Action, got, ok, tr.To)
		}
	}
}

func TestWhatCallersAndWorkersMayDo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		from   State
		action Action
		want   State // "" when refused
	}{
		{"", ActionCreate, StatePending},
		{"", ActionSubmit, StateAwaitingApproval},
		{StateAwaitingApproval, ActionApprove, StatePending},
		{StateAwaitingApproval, ActionReject, StateRejected},
		{StateAwaitingApproval, ActionCancel, StateCancelled},
		{StateAwaitingApproval, ActionClaim, ""}, // no worker runs what nobody approved
		{StateAwaitingApproval, ActionDeprovision, ""},
		{StateAwaitingApproval, ActionRetry, ""},
		{StatePending, ActionApprove, ""},
		{StatePending, ActionReject, ""},
		{StateRejected, ActionDeprovision, ""}, // nothing was written
		{StateRejected, ActionRetry, ""},
		{StateRejected, ActionApprove, ""},
		{StateRejected, ActionCancel, ""},
		{StateCancelled, ActionApprove, ""},
		{StatePending, ActionClaim, StateRunning},
		{StateFailed, ActionRetry, StateRunning},
		{StateDeprovisionFailed, ActionRetry, StateDeprovisioning},
		{StateDeprovisionFailed, ActionDeprovision, StateDeprovisioning},
		{StateDeprovisioning, ActionFail, StateDeprovisionFailed},
		{StateSucceeded, ActionRetry, ""},
		{StateSucceeded, ActionCancel, ""},
		{StateDeprovisioned, ActionDeprovision, ""},
		{StateDeprovisioned, ActionRetry, ""},
		{StateCancelled, ActionRetry, ""},
		{StateDeprovisioning, ActionCancel, ""},
	}
	for _, tc := range tests {
		got, ok := Next(tc.from, tc.action)
		if tc.want == "" && ok {
			t.Errorf("%q -%s-> %s is allowed; want it refused", tc.from, tc.action, got)
		}
		if tc.want != "" && got != tc.want {
			t.Errorf("%q -%s-> %q; want %s", tc.from, tc.action, got, tc.want)
		}
	}
	for _, s := range States {
		if s.Terminal() != (s == StateSucceeded || s == StateFailed || s == StateCancelled || s == StateRejected ||
			s == StateDeprovisioned || s == StateDeprovisionFailed) {
			t.Errorf("%s.Terminal() = %v", s, s.Terminal())
		}
		if len(outOf(s)) == 0 && s != StateDeprovisioned && s != StateRejected {
			t.Errorf("%s is a dead end", s)
		}
	}
}

func TestTheArchitectureDiagramIsTheTransitionTable(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../docs/ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	want := DiagramStart + "\n" + DiagramBlock() + DiagramEnd
	if !strings.Contains(string(b), want) {
		t.Errorf("docs/ARCHITECTURE.md's state diagram is stale: run go generate ./internal/provision")
	}
}
