package provision

import (
	"slices"
	"testing"
)

func TestEveryStateReachesATerminalState(t *testing.T) {
	t.Parallel()
	for _, start := range States {
		seen := map[State]bool{start: true}
		queue := []State{start}
		reached := start.Terminal()
		for len(queue) > 0 && !reached {
			s := queue[0]
			queue = queue[1:]
			for _, next := range Transitions[s] {
				if !next.Valid() {
					t.Fatalf("%s -> %q: not a state", s, next)
				}
				if next.Terminal() {
					reached = true
				}
				if !seen[next] {
					seen[next] = true
					queue = append(queue, next)
				}
			}
		}
		if !reached {
			t.Errorf("state %s cannot reach a terminal state", start)
		}
	}
	for _, s := range States {
		if _, ok := Transitions[s]; !ok {
			t.Errorf("state %s has no row in Transitions", s)
		}
	}
	// Final states stay final; every other terminal state has a way out
	// that a caller chooses.
	for _, final := range []State{StateDeprovisioned} {
		if len(Transitions[final]) != 0 {
			t.Errorf("%s is final but may move to %v", final, Transitions[final])
		}
	}
	if !slices.Contains(Transitions[StateFailed], StateRunning) {
		t.Error("a failed request cannot be retried")
	}
}
