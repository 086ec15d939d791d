package provision

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/bucketbridge/bucketbridge/internal/policy"
)

// Step names, as stored in replication_steps.name and shown by the API.
const (
	StepResolveAccounts               = "resolve_accounts"
	StepInspectSource                 = "inspect_source"
	StepInspectDestination            = "inspect_destination"
	StepEnableVersioningSource        = "enable_versioning_source"
	StepEnableVersioningDestination   = "enable_versioning_destination"
	StepSetSourceDefaultEncryption    = "set_source_default_encryption"
	StepEnsureReplicationRole         = "ensure_replication_role"
	StepPutRolePolicy                 = "put_role_policy"
	StepUpdateDestinationKeyPolicy    = "update_destination_key_policy"
	StepUpdateDestinationBucketPolicy = "update_destination_bucket_policy"
	StepUpdateSourceKeyPolicy         = "update_source_key_policy"
	StepPutReplicationRule            = "put_replication_rule"
	StepVerify                        = "verify"

	StepRemoveReplicationRule          = "remove_replication_rule"
	StepRemoveDestinationBucketPolicy  = "remove_destination_bucket_policy"
	StepRemoveDestinationKeyPolicy     = "remove_destination_key_policy"
	StepRemoveSourceKeyPolicy          = "remove_source_key_policy"
	StepRestoreSourceDefaultEncryption = "restore_source_default_encryption"
	StepDeleteRolePolicy               = "delete_role_policy"
	StepDeleteRole                     = "delete_role"
)

// ProvisionSteps returns the provisioning steps of docs/ARCHITECTURE.md
// (The steps) in order. Steps of one Group lock different documents and run
// concurrently; the rule is written only after the role's permissions and
// B's documents: objects written before the permissions exist fail and are
// never retried. The role's permissions come before the statements naming
// the role.
func ProvisionSteps() []StepDef {
	return []StepDef{
		{Name: StepResolveAccounts, Group: 1, Run: resolveAccounts},
		{Name: StepInspectSource, Group: 2, Run: inspectSource},
		{Name: StepInspectDestination, Group: 2, Run: inspectDestination},
		{Name: StepEnableVersioningSource, Group: 3, Run: enableVersioningSource},
		{Name: StepEnableVersioningDestination, Group: 3, Run: enableVersioningDestination},
		{Name: StepSetSourceDefaultEncryption, Group: 3, Run: syncSourceEncryption, Locks: sourceEncryptionLock, Skip: leavesSourceEncryption},
		{Name: StepEnsureReplicationRole, Group: 4, Run: ensureReplicationRole, Locks: roleLock},
		{Name: StepPutRolePolicy, Group: 5, Run: syncRolePolicies, Locks: roleLock},
		{Name: StepUpdateDestinationKeyPolicy, Group: 6, Run: syncDestinationKeyPolicy, Locks: destinationKeyLock},
		{Name: StepUpdateDestinationBucketPolicy, Group: 6, Run: syncDestinationBucketPolicy, Locks: destinationBucketLock},
		{Name: StepUpdateSourceKeyPolicy, Group: 6, Run: syncSourceKeyPolicy, Locks: sourceKeyLock, Skip: needsNoSourceKeyStatement},
		{Name: StepPutReplicationRule, Group: 7, Run: putReplicationRule, Locks: sourceBucketLock},
		{Name: StepVerify, Group: 8, Run: verify, TimeoutFunc: verifyTimeout, Interruptible: true},
	}
}

// DeprovisionSteps returns the steps that remove what provisioning added, in
// order. Each document is computed again from the requests that still hold
// it, as provisioning computes it, so removing one request's grants keeps
// everyone else's; so is the source bucket's default encryption, when the
// request asked for it. The role leaves B's documents before it is deleted: AWS
// rewrites a deleted role's ARN in a principal to its unique ID, which S3
// and KMS then refuse. Versioning is never turned off.
func DeprovisionSteps() []StepDef {
	return []StepDef{
		{Name: StepResolveAccounts, Group: 1, Run: resolveAccounts},
		{Name: StepRemoveReplicationRule, Group: 2, Run: removeReplicationRule, Locks: sourceBucketLock, Undoes: StepPutReplicationRule},
		{Name: StepRemoveDestinationBucketPolicy, Group: 3, Run: syncDestinationBucketPolicy, Locks: destinationBucketLock, Undoes: StepUpdateDestinationBucketPolicy},
		{Name: StepRemoveDestinationKeyPolicy, Group: 3, Run: syncDestinationKeyPolicy, Locks: destinationKeyLock, Undoes: StepUpdateDestinationKeyPolicy},
		{Name: StepRemoveSourceKeyPolicy, Group: 3, Run: syncSourceKeyPolicy, Locks: sourceKeyLock, Undoes: StepUpdateSourceKeyPolicy},
		{Name: StepRestoreSourceDefaultEncryption, Group: 3, Run: syncSourceEncryption, Locks: sourceEncryptionLock, Skip: leavesSourceEncryption, Undoes: StepSetSourceDefaultEncryption},
		{Name: StepDeleteRolePolicy, Group: 4, Run: syncRolePolicies, Locks: roleLock, Undoes: StepPutRolePolicy},
		{Name: StepDeleteRole, Group: 5, Run: deleteRole, Locks: roleLock, Undoes: StepEnsureReplicationRole},
	}
}

// The documents steps lock, by the document's ARN: requests sharing one
// serialize their read-modify-writes of it, even across server replicas.
func roleLock(run *Run) []string         { return []string{input(run).RoleARN()} }
func sourceBucketLock(run *Run) []string { return []string{bucketARN(run.Replication.Source)} }
func destinationBucketLock(run *Run) []string {
	return []string{bucketARN(run.Replication.Destination)}
}
func sourceKeyLock(run *Run) []string      { return []string{run.Replication.Source.KMSKeyARN} }
func destinationKeyLock(run *Run) []string { return []string{run.Replication.Destination.KMSKeyARN} }

// input is what the policy builders need from the run: the request and the
// role learned so far (the default role name until inspection says otherwise).
func input(run *Run) policy.Input {
	r := run.Replication
	in := r.PolicyInput(r.ID, run.Config.TrustConditions, roleName(run))
	in.AdoptedRoleARN = run.Facts().AdoptedRoleARN
	return in
}

func findings(f Facts) policy.Findings {
	return policy.Findings{DestinationOwnerEnforced: f.DestinationOwnerEnforced,
		SourceKeyNotDelegated: f.SourceKeyNotDelegated, SourceObjectLock: f.SourceObjectLock}
}

// roleName is the replication role: the one learned by inspection, or
// bucketbridge's default for the source bucket.
func roleName(run *Run) string {
	if n := run.Facts().RoleName; n != "" {
		return n
	}
	return policy.RoleName(run.Replication.Source.Bucket)
}

// bucketARN is the ARN of a side's bucket.
func bucketARN(s Side) string { return policy.BucketARN(policy.Partition(s.Region), s.Bucket) }

// peers returns the requests that hold documents selected by f (see
// PeerFilter), as the store has them, with this request as the run knows
// it: among them while it is being provisioned, not once it is being
// deprovisioned. Read under a document's lock, they say whose grants the
// document must hold.
func (r *Run) peers(ctx context.Context, f PeerFilter) ([]Peer, error) {
	var stored []Peer
	if r.Holders != nil {
		var err error
		if stored, err = r.Holders.Peers(ctx, f); err != nil {
			return nil, fmt.Errorf("list the requests sharing %+v: %w", f, err)
		}
	}
	self := r.Replication
	out := slices.DeleteFunc(stored, func(p Peer) bool { return p.ID == self.ID })
	if self.Phase == PhaseProvision && f.matches(self.Spec) {
		out = append(out, Peer{Replication: self, Facts: r.Facts()})
	}
	return out, nil
}

// rolesOf returns the sorted, distinct ARNs of the existing roles of the
// peers that keep selects.
func rolesOf(peers []Peer, keep func(Peer) bool) []string {
	var roles []string
	for _, p := range peers {
		if p.Facts.RoleARN != "" && keep(p) {
			roles = append(roles, p.Facts.RoleARN)
		}
	}
	slices.Sort(roles)
	return slices.Compact(roles)
}

// mustJSON encodes a document built by bucketbridge; the policy types always
// encode.
func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encode %T: %v", v, err))
	}
	return string(b)
}

// identity is who a session acts as.
type identity struct {
	Account string `json:"account"`
	ARN     string `json:"arn"`
}

// resolveAccounts proves that the provisioner sessions act in the request's
// accounts (docs/ARCHITECTURE.md, The steps).
func resolveAccounts(ctx context.Context, run *Run) (Result, error) {
	sides := []struct {
		name string
		acct *Account
		want string
	}{
		{"source", run.Source, run.Replication.Source.AccountID},
		{"destination", run.Destination, run.Replication.Destination.AccountID},
	}
	ids := make([]identity, len(sides))
	err := inParallel(len(sides), func(i int) error {
		side := sides[i]
		out, err := side.acct.STS.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			return classify(err, call{Account: side.want, Action: "sts:GetCallerIdentity", Resource: side.name + " session"})
		}
		got := aws.ToString(out.Account)
		if got != side.want {
			return Permanent(fmt.Sprintf("the %s session acts in account %s (%s), not in the request's account %s: check BB_PROVISIONER_ROLE and that the provisioner role ARN names account %s",
				side.name, got, aws.ToString(out.Arn), side.want, side.want), nil)
		}
		ids[i] = identity{Account: got, ARN: aws.ToString(out.Arn)}
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	return Result{After: map[string]identity{"source": ids[0], "destination": ids[1]}}, nil
}

// inParallel runs fn(0) … fn(n-1) at once, since each waits on AWS, and
// returns the error of the first (in index order) that failed.
func inParallel(n int, fn func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = fn(i) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// confirmWrites reports whether steps read back what they write. A request
// that ends with a canary proves its documents by their effect, so its
// provisioning steps take AWS's answer to a write as the write; removal,
// which no canary follows, and requests without one read back.
func (r *Run) confirmWrites() bool {
	return r.Replication.Phase != PhaseProvision || !r.Replication.Verify
}

// pending is the answer to an AWS read started ahead of the code that
// judges it: a step starts its independent reads at once and checks their
// answers in the order it would have made them, so that each costs no
// more wait than the slowest, and errors read as they would one after
// another.
type pending[T any] struct {
	done chan struct{}
	v    T
	err  error
}

// prefetch starts read now.
func prefetch[T any](read func() (T, error)) *pending[T] {
	p := &pending[T]{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.v, p.err = read()
	}()
	return p
}

// get waits for the answer.
func (p *pending[T]) get() (T, error) {
	<-p.done
	return p.v, p.err
}
