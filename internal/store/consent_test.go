package store_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	_ "github.com/jackc/pgx/v5/stdlib" // the database/sql driver goose needs
	"github.com/pressly/goose/v3"

	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/store"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
	"github.com/bucketbridge/bucketbridge/migrations"
)

// states returns the states a request's timeline entered, with their actors.
func states(t *testing.T, s *store.Store, id string) []string {
	t.Helper()
	events, err := s.Events(context.Background(), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range events {
		if e.Type == provision.EventState {
			out = append(out, string(e.State)+" by "+e.Actor)
		}
	}
	return out
}

func TestARequestThatNeedsConsentWaitsForItAndNoWorkerTakesIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	r, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(1), RequestedBy: "token:alice", NeedsApproval: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.State != provision.StateAwaitingApproval || r.FinishedAt != nil || r.ApprovedBy != "" || r.ApprovedAt != nil {
		t.Fatalf("created %s, finished %v, approved by %q at %v; want awaiting_approval, nobody's consent yet",
			r.State, r.FinishedAt, r.ApprovedBy, r.ApprovedAt)
	}
	events, _ := s.Events(ctx, r.ID, 0)
	if len(events) != 1 || !strings.Contains(events[0].Message, "waiting for an approver of destination account 222222222222") {
		t.Errorf("creation event = %+v", events)
	}
	if c, ok, err := s.Claim(ctx, "w", time.Minute); err != nil || ok {
		t.Fatalf("a worker claimed %s (%v) while it awaited approval", c.Replication.ID, err)
	}

	approved, err := s.Approve(ctx, r.ID, "token:bob")
	if err != nil {
		t.Fatal(err)
	}
	if approved.State != provision.StatePending || approved.ApprovedBy != "token:bob" || approved.ApprovedAt == nil {
		t.Fatalf("approved: %s by %q at %v", approved.State, approved.ApprovedBy, approved.ApprovedAt)
	}
	c, ok, err := s.Claim(ctx, "w", time.Minute)
	if err != nil || !ok || c.Replication.ID != r.ID {
		t.Fatalf("claim after approval = %v %v %v", c.Replication.ID, ok, err)
	}
	want := []string{"awaiting_approval by token:alice", "pending by token:bob", "running by worker:w"}
	if diff := cmp.Diff(want, states(t, s, r.ID)); diff != "" {
		t.Errorf("timeline (-want +got):\n%s", diff)
	}
	var se *provision.StateError
	if _, err := s.Approve(ctx, r.ID, "token:bob"); !errors.As(err, &se) || se.State != provision.StateRunning {
		t.Errorf("approving a running request = %v, want a StateError", err)
	}
}

func TestARequesterWhoMaySpeakForTheDestinationIsItsApprover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	r, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(1), RequestedBy: "token:ops"})
	if err != nil {
		t.Fatal(err)
	}
	if r.State != provision.StatePending || r.ApprovedBy != "token:ops" || r.ApprovedAt == nil || !r.ApprovedAt.Equal(r.CreatedAt) {
		t.Fatalf("created %s, approved by %q at %v (created %v); want pending, approved by its requester as it was created",
			r.State, r.ApprovedBy, r.ApprovedAt, r.CreatedAt)
	}
}

func TestARejectedRequestIsFinalAndFreesItsRoute(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	r, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(1), RequestedBy: "token:alice", NeedsApproval: true})
	if err != nil {
		t.Fatal(err)
	}
	var dup *provision.DuplicateError
	if _, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(1), RequestedBy: "token:ops"}); !errors.As(err, &dup) ||
		dup.ExistingID != r.ID || dup.SourceAccountID != "111111111111" || dup.DestinationAccountID != "222222222222" {
		t.Fatalf("a second request for a route awaiting approval = %v, want a DuplicateError naming %s and its accounts", err, r.ID)
	}
	rejected, err := s.Reject(ctx, r.ID, "token:bob", "bucket dst holds regulated data")
	if err != nil {
		t.Fatal(err)
	}
	if rejected.State != provision.StateRejected || rejected.FinishedAt == nil || rejected.RejectedBy != "token:bob" ||
		rejected.RejectedAt == nil || rejected.RejectionReason != "bucket dst holds regulated data" || rejected.ApprovedBy != "" {
		t.Fatalf("rejected = %+v", rejected)
	}
	var se *provision.StateError
	for name, act := range map[string]func() error{
		"approve":     func() error { _, err := s.Approve(ctx, r.ID, "token:bob"); return err },
		"reject":      func() error { _, err := s.Reject(ctx, r.ID, "token:bob", "again"); return err },
		"cancel":      func() error { _, err := s.Cancel(ctx, r.ID, "token:alice"); return err },
		"retry":       func() error { _, err := s.Retry(ctx, r.ID, "token:alice"); return err },
		"deprovision": func() error { _, err := s.Deprovision(ctx, r.ID, "token:alice"); return err },
	} {
		if err := act(); !errors.As(err, &se) || se.State != provision.StateRejected {
			t.Errorf("%s a rejected request = %v, want a StateError", name, err)
		}
	}
	events, _ := s.Events(ctx, r.ID, 0)
	if last := events[len(events)-1]; last.Message != "rejected by token:bob: bucket dst holds regulated data" {
		t.Errorf("rejection event = %+v", last)
	}
	if _, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(1), RequestedBy: "token:alice", NeedsApproval: true}); err != nil {
		t.Errorf("asking again after a rejection: %v", err)
	}
}

func TestARequesterMayCancelWhileAwaitingApproval(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	r, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(1), RequestedBy: "token:alice", NeedsApproval: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Cancel(ctx, r.ID, "token:alice")
	if err != nil || c.State != provision.StateCancelled || c.FinishedAt == nil {
		t.Fatalf("cancel = %s %v", c.State, err)
	}
	var se *provision.StateError
	if _, err := s.Approve(ctx, r.ID, "token:bob"); !errors.As(err, &se) {
		t.Errorf("approving a cancelled request = %v, want a StateError", err)
	}
}

// Many approvers deciding at once: exactly one decision stands, and the
// timeline holds it once.
func TestConcurrentApprovalsAndRejectionsDecideOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	r, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(1), RequestedBy: "token:alice", NeedsApproval: true})
	if err != nil {
		t.Fatal(err)
	}
	const n = 16
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		won      []provision.State
		failures []error
	)
	for i := range n {
		wg.Go(func() {
			var (
				got provision.Replication
				err error
			)
			if i%2 == 0 {
				got, err = s.Approve(ctx, r.ID, "token:bob")
			} else {
				got, err = s.Reject(ctx, r.ID, "token:carol", "no")
			}
			mu.Lock()
			defer mu.Unlock()
			var se *provision.StateError
			switch {
			case err == nil:
				won = append(won, got.State)
			case !errors.As(err, &se):
				failures = append(failures, err)
			}
		})
	}
	wg.Wait()
	if len(failures) > 0 || len(won) != 1 {
		t.Fatalf("%d decisions stood (%v), errors %v; want exactly one", len(won), won, failures)
	}
	if got := states(t, s, r.ID); len(got) != 2 {
		t.Errorf("timeline %v, want the creation and one decision", got)
	}
}

func TestReplayAnswersOnlyWhatWasRemembered(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	if got, err := s.Replay(ctx, "token:jira", "k1", []byte("h1")); err != nil || got != nil {
		t.Fatalf("replay of an unused key = %v, %v; want nothing", got, err)
	}
	answer := func(r provision.Replication) (provision.Response, error) {
		return provision.Response{Status: 202, Body: []byte("created " + r.ID)}, nil
	}
	r, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(1), RequestedBy: "token:jira", IdempotencyKey: "k1",
		RequestHash: []byte("h1"), Answer: answer})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Replay(ctx, "token:jira", "k1", []byte("h1"))
	if err != nil || got == nil || got.ReplicationID != r.ID || string(got.Body) != "created "+r.ID {
		t.Fatalf("replay = %+v, %v", got, err)
	}
	if _, err := s.Replay(ctx, "token:jira", "k1", []byte("h2")); !errors.Is(err, provision.ErrIdempotencyKeyReused) {
		t.Errorf("replay with another body = %v", err)
	}
	if got, err := s.Replay(ctx, "token:portal", "k1", []byte("h1")); err != nil || got != nil {
		t.Errorf("another caller's replay of the key = %v, %v; keys are per caller", got, err)
	}
}

// The consent migration names every earlier caller as the token it was,
// and its Down cancels whatever still waits for consent, which the older
// lifecycle would otherwise run.
func TestConsentMigrationRenamesCallersAndDownCancelsWhatAwaitsConsent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	s, err := store.Open(ctx, url, storetest.MaxConns)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	db := connect(t, url)
	sqlDB, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer sqlDB.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, migrations.FS)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 6); err != nil {
		t.Fatal(err)
	}
	// Rows as the older binary wrote them.
	var id string
	if err := db.QueryRow(ctx, `INSERT INTO replications (id, state, source_account_id, source_region, source_bucket,
	source_kms_key_arn, destination_account_id, destination_region, destination_bucket, destination_kms_key_arn, requested_by)
	VALUES (gen_random_uuid(), 'pending', '111111111111', 'us-east-1', 'a', 'k', '222222222222', 'us-west-2', 'b', 'k', 'portal')
	RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	for _, actor := range []string{"portal", "worker:w1", "system"} {
		if _, err := db.Exec(ctx, `WITH n AS (UPDATE replications SET event_seq = event_seq + 1 WHERE id = $1 RETURNING event_seq)
		INSERT INTO replication_events (replication_id, seq, type, actor, message) SELECT $1, n.event_seq, 'step', $2, 'x' FROM n`, id, actor); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(ctx, `INSERT INTO idempotency_keys (caller, key, request_hash, replication_id, response_status, response_body)
	VALUES ('portal', 'k', 'h', $1, 202, '{}')`, id); err != nil {
		t.Fatal(err)
	}

	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := s.Get(ctx, id)
	if err != nil || r.RequestedBy != "token:portal" {
		t.Fatalf("requested_by after the migration = %q, %v; want token:portal", r.RequestedBy, err)
	}
	events, _ := s.Events(ctx, id, 0)
	var actors []string
	for _, e := range events {
		actors = append(actors, e.Actor)
	}
	if diff := cmp.Diff([]string{"token:portal", "worker:w1", "system"}, actors); diff != "" {
		t.Errorf("actors after the migration (-want +got):\n%s", diff)
	}
	if replay, err := s.Replay(ctx, "token:portal", "k", []byte("h")); err != nil || replay == nil || replay.ReplicationID != id {
		t.Errorf("the caller's Idempotency-Key after the migration: %+v, %v", replay, err)
	}
	waiting, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(2), RequestedBy: "token:alice", NeedsApproval: true})
	if err != nil {
		t.Fatal(err)
	}

	if _, err := p.DownTo(ctx, 6); err != nil {
		t.Fatal(err)
	}
	var state, by string
	if err := db.QueryRow(ctx, `SELECT state::text, requested_by FROM replications WHERE id = $1`, waiting.ID).Scan(&state, &by); err != nil {
		t.Fatal(err)
	}
	if state != "cancelled" || by != "alice" {
		t.Errorf("after Down, the request awaiting approval is %s, requested by %q; want cancelled, by alice", state, by)
	}
}
