package provision

import (
	"fmt"
	"slices"
	"strings"
)

// State is where a replication request is in its lifecycle. The same values
// form the Postgres enum replication_state.
type State string

const (
	// StateAwaitingApproval: stored by the API for a caller who may ask for
	// the source account's data to leave but does not speak for the
	// destination account, so an approver of the destination must consent
	// first; no worker touches it and nothing is written into either
	// account. Leaves for pending (a destination approver approves),
	// rejected (a destination approver rejects) or cancelled (a requester
	// on the source cancels).
	StateAwaitingApproval State = "awaiting_approval"
	// StatePending: stored by the API, or approved, waiting for a worker to
	// claim it. Leaves for running (a worker claims it) or cancelled (a
	// caller cancels).
	StatePending State = "pending"
	// StateRunning: a worker holds its lease and is provisioning it, or it
	// waits for its next attempt. Leaves for succeeded, failed or cancelled.
	StateRunning State = "running"
	// StateSucceeded: every provisioning step is done and verified. Leaves
	// only for deprovisioning.
	StateSucceeded State = "succeeded"
	// StateFailed: a provisioning step failed permanently; last_error says
	// why. Leaves for running (a caller retries) or deprovisioning.
	StateFailed State = "failed"
	// StateCancelled: a caller cancelled it before it finished. Leaves only
	// for deprovisioning, which removes what it did before it stopped.
	StateCancelled State = "cancelled"
	// StateRejected: an approver of the destination account refused
	// consent; rejection_reason says why. Final: nothing was ever written,
	// so there is nothing to deprovision, and its route is free for a new
	// request.
	StateRejected State = "rejected"
	// StateDeprovisioning: a worker is removing what bucketbridge added.
	// Leaves for deprovisioned, or deprovision_failed.
	StateDeprovisioning State = "deprovisioning"
	// StateDeprovisioned: everything bucketbridge added is removed. Final.
	StateDeprovisioned State = "deprovisioned"
	// StateDeprovisionFailed: a removal step failed permanently; last_error
	// says why. Leaves for deprovisioning when a caller retries or deletes
	// it again.
	StateDeprovisionFailed State = "deprovision_failed"
)

// States lists every state, in lifecycle order.
var States = []State{
	StateAwaitingApproval, StatePending, StateRunning, StateSucceeded, StateFailed, StateCancelled, StateRejected,
	StateDeprovisioning, StateDeprovisioned, StateDeprovisionFailed,
}

// Valid reports whether s is one of States.
func (s State) Valid() bool { return slices.Contains(States, s) }

// Terminal reports whether no worker will move a request in state s without
// a caller asking (retry, deprovision). Terminal requests have finished_at set.
func (s State) Terminal() bool {
	switch s {
	case StateSucceeded, StateFailed, StateCancelled, StateRejected, StateDeprovisioned, StateDeprovisionFailed:
		return true
	}
	return false
}

// Phase is the step table a state belongs to.
func (s State) Phase() Phase {
	switch s {
	case StateDeprovisioning, StateDeprovisioned, StateDeprovisionFailed:
		return PhaseDeprovision
	}
	return PhaseProvision
}

// Action is what moves a request from one state to another.
type Action string

const (
	// ActionCreate: a caller submits a request that needs nobody else's
	// consent: they may speak for both of its accounts.
	ActionCreate Action = "create"
	// ActionSubmit: a caller submits a request that must wait for the
	// consent of an approver of its destination account. Creating is two
	// actions, not one action with two outcomes, so that the lifecycle
	// stays a function of state and action.
	ActionSubmit Action = "submit"
	// ActionApprove: an approver of the destination account consents.
	ActionApprove Action = "approve"
	// ActionReject: an approver of the destination account refuses.
	ActionReject Action = "reject"
	// ActionClaim: a worker takes a pending request.
	ActionClaim Action = "claim"
	// ActionComplete: a worker finished every step of the request's phase.
	ActionComplete Action = "complete"
	// ActionFail: a step failed permanently, or retrying ran past the deadline.
	ActionFail Action = "fail"
	// ActionCancel: a caller cancelled the request (also while it awaited
	// approval), or the worker holding it stopped after its current step
	// because a caller asked.
	ActionCancel Action = "cancel"
	// ActionRetry: a caller resumes a failed request from its failed step.
	ActionRetry Action = "retry"
	// ActionDeprovision: a caller asks to remove what the request added.
	ActionDeprovision Action = "deprovision"
)

// Transition is one move the lifecycle allows: From is "" for a request
// being created.
type Transition struct {
	From   State
	Action Action
	To     State
}

// Transitions is the whole lifecycle. The store applies every state change
// through it, and the database refuses any change of state it lacks (its
// copy, the table replication_transitions, is checked against this one by
// a test).
var Transitions = []Transition{
	{"", ActionCreate, StatePending},
	{"", ActionSubmit, StateAwaitingApproval},
	{StateAwaitingApproval, ActionApprove, StatePending},
	{StateAwaitingApproval, ActionReject, StateRejected},
	{StateAwaitingApproval, ActionCancel, StateCancelled},
	{StatePending, ActionClaim, StateRunning},
	{StatePending, ActionCancel, StateCancelled},
	{StateRunning, ActionComplete, StateSucceeded},
	{StateRunning, ActionFail, StateFailed},
	{StateRunning, ActionCancel, StateCancelled},
	{StateFailed, ActionRetry, StateRunning},
	{StateSucceeded, ActionDeprovision, StateDeprovisioning},
	{StateFailed, ActionDeprovision, StateDeprovisioning},
	{StateCancelled, ActionDeprovision, StateDeprovisioning},
	{StateDeprovisioning, ActionComplete, StateDeprovisioned},
	{StateDeprovisioning, ActionFail, StateDeprovisionFailed},
	{StateDeprovisionFailed, ActionRetry, StateDeprovisioning},
	{StateDeprovisionFailed, ActionDeprovision, StateDeprovisioning},
}

// Next returns the state action moves a request in state from to, or false
// when the lifecycle does not allow it.
func Next(from State, action Action) (State, bool) {
	for _, t := range Transitions {
		if t.From == from && t.Action == action {
			return t.To, true
		}
	}
	return "", false
}

// Change is one transition as applied, for the hooks that run with it (the
// callbacks' outbox, metrics).
type Change struct {
	Transition
	// Actor is who made the change (see Event.Actor).
	Actor string
	// Replication is the request as the change left it.
	Replication Replication
}

// Actors of events that no caller made.
const (
	// ActorSystem is the actor of changes made by the service itself.
	ActorSystem = "system"
	// actorWorkerPrefix prefixes the lease owner of a worker.
	actorWorkerPrefix = "worker:"
)

// WorkerActor is the actor of everything a worker does.
func WorkerActor(owner string) string { return actorWorkerPrefix + owner }

// EventType says what an event of a request's timeline records.
type EventType string

const (
	// EventState: the request changed state.
	EventState EventType = "state"
	// EventStep: an attempt of a step ended.
	EventStep EventType = "step"
	// EventRetry: a failed attempt will be tried again later.
	EventRetry EventType = "retry"
	// EventLease: a worker resumed the request after another's lease expired.
	EventLease EventType = "lease"
	// EventCancelRequested: a caller asked a running request to stop.
	EventCancelRequested EventType = "cancel_requested"
)

// EventTypes lists every event type; the database allows exactly these.
var EventTypes = []EventType{EventState, EventStep, EventRetry, EventLease, EventCancelRequested}

// StepStatus is where an attempt of a step is.
type StepStatus string

const (
	// StepRunning: an attempt started and has not ended (or its worker died).
	StepRunning StepStatus = "running"
	// StepSucceeded: the step did what it had to.
	StepSucceeded StepStatus = "succeeded"
	// StepFailed: the last attempt failed; it is retried, or the request failed.
	StepFailed StepStatus = "failed"
	// StepSkipped: the step had nothing to do for this request.
	StepSkipped StepStatus = "skipped"
)

// StepStatuses lists every step status; the database allows exactly these.
var StepStatuses = []StepStatus{StepRunning, StepSucceeded, StepFailed, StepSkipped}

//go:generate go run ./statediagram ../../docs/ARCHITECTURE.md

// The markers around the state diagram in docs/ARCHITECTURE.md, which go
// generate rewrites from Transitions.
const (
	DiagramStart = "<!-- state diagram: generated from provision.Transitions by go generate ./internal/provision; do not edit -->"
	DiagramEnd   = "<!-- end of state diagram -->"
)

// DiagramBlock is the Markdown that stands between the diagram's markers.
func DiagramBlock() string { return "```mermaid\n" + Mermaid() + "```\n" }

// Mermaid renders Transitions as a Mermaid state diagram.
func Mermaid() string {
	var b strings.Builder
	b.WriteString("stateDiagram-v2\n")
	for _, t := range Transitions {
		from := string(t.From)
		if from == "" {
			from = "[*]"
		}
		fmt.Fprintf(&b, "    %s --> %s: %s\n", from, t.To, t.Action)
	}
	for _, s := range States {
		if len(outOf(s)) == 0 {
			fmt.Fprintf(&b, "    %s --> [*]\n", s)
		}
	}
	return b.String()
}

// outOf returns the transitions leaving s.
func outOf(s State) []Transition {
	var out []Transition
	for _, t := range Transitions {
		if t.From == s {
			out = append(out, t)
		}
	}
	return out
}
