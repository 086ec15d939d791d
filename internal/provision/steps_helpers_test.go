package provision_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/bucketbridge/bucketbridge/internal/policy"
	"github.com/bucketbridge/bucketbridge/internal/provision"
)

// locks is an in-process stand-in for what the engine's requests share
// through Postgres: the advisory locks, the requests that hold documents
// and what was last written into them (provision.Holders).
type locks struct {
	mu sync.Mutex
	m  map[string]chan struct{}

	heldMu  sync.Mutex
	held    map[string]*provision.Run
	granted map[string]provision.Grant
	leaving map[string]*provision.Run
}

func newLocks() *locks {
	return &locks{m: map[string]chan struct{}{}, held: map[string]*provision.Run{}, leaving: map[string]*provision.Run{}, granted: map[string]provision.Grant{}}
}

// Granted has the signature of Holders.Granted.
func (l *locks) Granted(_ context.Context, document string) (provision.Grant, error) {
	l.heldMu.Lock()
	defer l.heldMu.Unlock()
	return l.granted[document], nil
}

// RecordGranted has the signature of Holders.RecordGranted.
func (l *locks) RecordGranted(_ context.Context, by string, documents map[string][]string) error {
	l.heldMu.Lock()
	defer l.heldMu.Unlock()
	for d, roles := range documents {
		l.granted[d] = provision.Grant{Roles: slices.Clone(roles), WrittenBy: by, WrittenAt: time.Now()}
	}
	return nil
}

// Peers has the signature of Holders.Peers: the held requests, with what their
// runs learned so far (the engine stores facts with every step).
func (l *locks) Peers(_ context.Context, f provision.PeerFilter) ([]provision.Peer, error) {
	l.heldMu.Lock()
	defer l.heldMu.Unlock()
	var out []provision.Peer
	add := func(r *provision.Run, state provision.State) {
		p := provision.Peer{Replication: r.Replication, Facts: r.Facts()}
		p.State = state
		if (f.SourceBucket == "" || f.SourceBucket == p.Source.Bucket) && (f.DestinationBucket == "" || f.DestinationBucket == p.Destination.Bucket) &&
			(f.SourceKey == "" || f.SourceKey == p.Source.KMSKeyARN) && (f.DestinationKey == "" || f.DestinationKey == p.Destination.KMSKeyARN) {
			out = append(out, p)
		}
	}
	for _, r := range l.held {
		add(r, provision.StateRunning)
	}
	if f.Leaving {
		for _, r := range l.leaving {
			add(r, provision.StateDeprovisioning)
		}
	}
	return out, nil
}

// hold records that run's request holds documents, as a request being
// provisioned, or provisioned, does in the store.
func (l *locks) hold(run *provision.Run) {
	l.heldMu.Lock()
	defer l.heldMu.Unlock()
	l.held[run.Replication.ID] = run
	delete(l.leaving, run.Replication.ID)
}

// release records that a request no longer holds documents, as one being
// deprovisioned does; it is leaving until done says it is gone.
func (l *locks) release(id string) {
	l.heldMu.Lock()
	defer l.heldMu.Unlock()
	if r, ok := l.held[id]; ok {
		l.leaving[id] = r
	}
	delete(l.held, id)
}

// done records that a request is deprovisioned: it is neither holding nor
// leaving.
func (l *locks) done(id string) {
	l.heldMu.Lock()
	defer l.heldMu.Unlock()
	delete(l.held, id)
	delete(l.leaving, id)
}

// sharedOf finds the locks a run was opened with, for runPhase.
var sharedOf sync.Map // *provision.Run → *locks

// Lock has the signature of Run.Lock: it takes keys in sorted order.
func (l *locks) Lock(ctx context.Context, keys ...string) (func(), error) {
	keys = slices.Sorted(slices.Values(keys))
	keys = slices.Compact(keys)
	var unlocks []func()
	unlockAll := func() {
		for i := len(unlocks) - 1; i >= 0; i-- {
			unlocks[i]()
		}
	}
	for _, k := range keys {
		u, err := l.lock(ctx, k)
		if err != nil {
			unlockAll()
			return nil, err
		}
		unlocks = append(unlocks, u)
	}
	return unlockAll, nil
}

func (l *locks) lock(ctx context.Context, key string) (func(), error) {
	l.mu.Lock()
	ch, ok := l.m[key]
	if !ok {
		ch = make(chan struct{}, 1)
		l.m[key] = ch
	}
	l.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// openRun opens both sessions and builds a run of the request, as the engine does.
func openRun(ctx context.Context, s provision.Sessions, l *locks, id string, spec provision.Spec, facts provision.Facts) (*provision.Run, error) {
	src, err := s.Account(ctx, spec.Source.AccountID, spec.Source.Region)
	if err != nil {
		return nil, err
	}
	dst, err := s.Account(ctx, spec.Destination.AccountID, spec.Destination.Region)
	if err != nil {
		return nil, err
	}
	run := provision.NewRun(provision.Replication{ID: id, Spec: spec, Phase: provision.PhaseProvision}, facts)
	run.Source, run.Destination = src, dst
	run.Lock, run.Holders = l.Lock, l
	sharedOf.Store(run, l)
	run.Config = provision.StepConfig{VerifyTimeout: 20 * time.Second, PollInterval: 5 * time.Millisecond}
	return run, nil
}

// runPhase runs steps with the engine's group runner: groups in table
// order, and a group's failed steps (never its succeeded ones) again, up to
// retries times, when their error is not permanent (the engine's backoff,
// without the waiting). It stops at the first group with an error left.
func runPhase(ctx context.Context, run *provision.Run, steps []provision.StepDef, retries int) (map[string]provision.Result, error) {
	l, _ := sharedOf.Load(run)
	if slices.ContainsFunc(steps, func(d provision.StepDef) bool { return d.Undoes != "" }) {
		run.Replication.Phase = provision.PhaseDeprovision
		if l != nil {
			l.(*locks).release(run.Replication.ID)
		}
	} else {
		run.Replication.Phase = provision.PhaseProvision
		if l != nil {
			l.(*locks).hold(run)
		}
	}
	results := map[string]provision.Result{}
	for _, group := range provision.Groups(steps) {
		for attempt := 0; len(group) > 0; attempt++ {
			var again []provision.StepDef
			var errs []error
			for _, o := range provision.RunGroup(ctx, run, group, nil) {
				results[o.Def.Name] = o.Result
				switch {
				case o.Err == nil:
				case provision.IsPermanent(o.Err) || attempt >= retries:
					errs = append(errs, fmt.Errorf("%s: %w", o.Def.Name, o.Err))
				default:
					again = append(again, o.Def)
				}
			}
			if err := errors.Join(errs...); err != nil {
				return results, err
			}
			if group = again; len(group) > 0 {
				if err := sleepCtx(ctx, 5*time.Millisecond); err != nil {
					return results, err
				}
			}
		}
	}
	return results, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func step(t *testing.T, steps []provision.StepDef, name string) provision.StepDef {
	t.Helper()
	for _, s := range steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no step %s", name)
	return provision.StepDef{}
}

// through returns the steps of a table up to and including the one named.
func through(t *testing.T, steps []provision.StepDef, name string) []provision.StepDef {
	t.Helper()
	for i, s := range steps {
		if s.Name == name {
			return steps[:i+1]
		}
	}
	t.Fatalf("no step %s", name)
	return nil
}

// permanentDetail returns the detail of a permanent error, failing the test
// unless err is one.
func permanentDetail(t *testing.T, err error) string {
	t.Helper()
	var p *provision.PermanentError
	if !errors.As(err, &p) {
		t.Fatalf("error %v (%T) is not permanent", err, err)
	}
	return p.Detail
}

// The documents of docs/ARCHITECTURE.md, written out by hand (not
// through the builders under test).

func roleARN(account, name string) string { return "arn:aws:iam::" + account + ":role/" + name }

func jsonList(v []string) string {
	b, _ := json.Marshal(v)
	return string(b)
}

const wantTrust = `{"Version":"2012-10-17","Statement":[{"Sid":"S3ReplicationAssume","Effect":"Allow","Principal":{"Service":"s3.amazonaws.com"},"Action":"sts:AssumeRole"}]}`

// wantRolePolicy is the inline policy for replication of src into dst with
// an empty prefix.
func wantRolePolicy(src, dst provision.Side, ownerEnforced bool) string {
	dstSid, dstActions := "DestinationObjects", `["s3:ReplicateObject","s3:ReplicateDelete","s3:ReplicateTags","s3:ObjectOwnerOverrideToBucketOwner"]`
	if ownerEnforced {
		dstSid, dstActions = "DestinationObjectsOwnerEnforced", `["s3:ReplicateObject","s3:ReplicateDelete","s3:ReplicateTags"]`
	}
	x, y := "arn:aws:s3:::"+src.Bucket, "arn:aws:s3:::"+dst.Bucket
	return `{"Version":"2012-10-17","Statement":[
  {"Sid":"SourceBucket","Effect":"Allow","Action":["s3:ListBucket","s3:GetReplicationConfiguration"],"Resource":"` + x + `"},
  {"Sid":"SourceObjects","Effect":"Allow","Action":["s3:GetObjectVersionForReplication","s3:GetObjectVersionAcl","s3:GetObjectVersionTagging"],"Resource":"` + x + `/*"},
  {"Sid":"` + dstSid + `","Effect":"Allow","Action":` + dstActions + `,"Resource":"` + y + `/*"},
  {"Sid":"DecryptSource","Effect":"Allow","Action":"kms:Decrypt","Resource":"` + src.KMSKeyARN + `",
   "Condition":{"StringEquals":{"kms:ViaService":"s3.` + src.Region + `.amazonaws.com"},"StringLike":{"kms:EncryptionContext:aws:s3:arn":["` + x + `","` + x + `/*"]}}},
  {"Sid":"EncryptDestination","Effect":"Allow","Action":["kms:Encrypt","kms:GenerateDataKey","kms:Decrypt"],"Resource":"` + dst.KMSKeyARN + `",
   "Condition":{"StringEquals":{"kms:ViaService":"s3.` + dst.Region + `.amazonaws.com"},"StringLike":{"kms:EncryptionContext:aws:s3:arn":["` + y + `","` + y + `/*"]}}}]}`
}

// wantKeyStatement is bucketbridge's statement in KB's key policy.
func wantKeyStatement(dst provision.Side, roles []string) string {
	y := "arn:aws:s3:::" + dst.Bucket
	return `{"Sid":"` + policy.KeyStatementSid(policy.SidReplicaEncrypt, dst.Bucket) + `","Effect":"Allow","Principal":{"AWS":` + jsonList(roles) + `},
 "Action":["kms:Encrypt","kms:GenerateDataKey","kms:Decrypt"],"Resource":"*",
 "Condition":{"StringEquals":{"kms:ViaService":"s3.` + dst.Region + `.amazonaws.com"},"StringLike":{"kms:EncryptionContext:aws:s3:arn":["` + y + `","` + y + `/*"]}}}`
}

// wantBucketStatements are bucketbridge's two statements in Y's bucket policy.
func wantBucketStatements(dst provision.Side, roles []string) []string {
	y := "arn:aws:s3:::" + dst.Bucket
	return []string{
		`{"Sid":"BucketbridgeReplicaObjects","Effect":"Allow","Principal":{"AWS":` + jsonList(roles) + `},"Action":["s3:ReplicateObject","s3:ReplicateDelete","s3:ReplicateTags","s3:ObjectOwnerOverrideToBucketOwner"],"Resource":"` + y + `/*"}`,
		`{"Sid":"BucketbridgeReplicaBucket","Effect":"Allow","Principal":{"AWS":` + jsonList(roles) + `},"Action":"s3:GetBucketVersioning","Resource":"` + y + `"}`,
	}
}

// wantRule is the request's replication rule with an empty prefix.
func wantRule(id string, priority int, dst provision.Side, ownerEnforced bool) string {
	acl := `"AccessControlTranslation":{"Owner":"Destination"},`
	if ownerEnforced {
		acl = ""
	}
	return fmt.Sprintf(`{"ID":"bucketbridge-%s","Priority":%d,"Status":"Enabled","Filter":{"Prefix":""},
 "DeleteMarkerReplication":{"Status":"Disabled"},
 "SourceSelectionCriteria":{"SseKmsEncryptedObjects":{"Status":"Enabled"},"ReplicaModifications":{"Status":"Disabled"}},
 "Destination":{"Bucket":"arn:aws:s3:::%s","Account":"%s",%s"EncryptionConfiguration":{"ReplicaKmsKeyID":"%s"},"StorageClass":"STANDARD"}}`,
		id, priority, dst.Bucket, dst.AccountID, acl, dst.KMSKeyARN)
}

func doc(stmts ...string) string {
	return `{"Version":"2012-10-17","Statement":[` + strings.Join(stmts, ",") + `]}`
}

// keyDoc is a key policy with the Id KMS gives default key policies.
func keyDoc(stmts ...string) string {
	return `{"Version":"2012-10-17","Id":"key-default-1","Statement":[` + strings.Join(stmts, ",") + `]}`
}

func mustParse(t *testing.T, s string) policy.Document {
	t.Helper()
	d, err := policy.Parse([]byte(s))
	if err != nil {
		t.Fatalf("parse %s: %v", s, err)
	}
	return d
}

func mustDecodeIAM(t *testing.T, s string) policy.Document {
	t.Helper()
	d, err := policy.DecodeIAM(s)
	if err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return d
}

// checkDoc fails unless got grants exactly what want does.
func checkDoc(t *testing.T, what string, got policy.Document, want string) {
	t.Helper()
	if w := mustParse(t, want); !policy.Equal(got, w) {
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(w)
		t.Errorf("%s differs from the documents of docs/ARCHITECTURE.md:\n got %s\nwant %s", what, gb, wb)
	}
}

// fromSDK converts an SDK replication configuration.
func fromSDK(t *testing.T, c *s3types.ReplicationConfiguration) policy.ReplicationConfiguration {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	out, err := policy.ParseReplicationConfiguration(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// principalsOf returns the AWS principals of the statement with this Sid, and
// how many statements carry it.
func principalsOf(d policy.Document, sid string) ([]string, int) {
	var out []string
	n := 0
	for _, st := range d.Statement {
		if st.Sid == sid {
			n++
			if st.Principal != nil {
				out = append(out, st.Principal.IDs["AWS"]...)
			}
		}
	}
	return out, n
}

func sorted(v ...string) []string {
	out := slices.Clone(v)
	slices.Sort(out)
	return out
}

func jsonMarshal(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}
