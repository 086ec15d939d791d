package provision

import (
	"context"
	"encoding/json"
	"fmt"

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
	StepEnsureReplicationRole         = "ensure_replication_role"
	StepPutRolePolicy                 = "put_role_policy"
	StepUpdateDestinationKeyPolicy    = "update_destination_key_policy"
	StepUpdateDestinationBucketPolicy = "update_destination_bucket_policy"
	StepUpdateSourceKeyPolicy         = "update_source_key_policy"
	StepPutReplicationRule            = "put_replication_rule"
	StepVerify                        = "verify"

	StepRemoveReplicationRule         = "remove_replication_rule"
	StepRemoveDestinationBucketPolicy = "remove_destination_bucket_policy"
	StepRemoveDestinationKeyPolicy    = "remove_destination_key_policy"
	StepRemoveSourceKeyPolicy         = "remove_source_key_policy"
	StepDeleteRolePolicy              = "delete_role_policy"
	StepDeleteRole                    = "delete_role"
)

// ProvisionSteps returns the provisioning steps of docs/ARCHITECTURE.md (The steps) in order. Steps
// of one Group touch different documents and run concurrently; the rule is
// written only after the role policy and B's documents (Known traps: objects
// written before the permissions exist fail and are never retried). The
// role's inline policy comes before the statements naming the role, so a
// concurrent deprovisioning of another request sharing the role sees that
// this one still needs it (roleStillReplicates).
func ProvisionSteps() []StepDef {
	return []StepDef{
		{Name: StepResolveAccounts, Group: 1, Run: resolveAccounts},
		{Name: StepInspectSource, Group: 2, Run: inspectSource},
		{Name: StepInspectDestination, Group: 2, Run: inspectDestination},
		{Name: StepEnableVersioningSource, Group: 3, Run: enableVersioningSource},
		{Name: StepEnableVersioningDestination, Group: 3, Run: enableVersioningDestination},
		{Name: StepEnsureReplicationRole, Group: 4, Run: ensureReplicationRole},
		{Name: StepPutRolePolicy, Group: 5, Run: putRolePolicy},
		{Name: StepUpdateDestinationKeyPolicy, Group: 6, Run: updateDestinationKeyPolicy},
		{Name: StepUpdateDestinationBucketPolicy, Group: 6, Run: updateDestinationBucketPolicy},
		{Name: StepUpdateSourceKeyPolicy, Group: 6, Run: updateSourceKeyPolicy},
		{Name: StepPutReplicationRule, Group: 7, Run: putReplicationRule},
		{Name: StepVerify, Group: 8, Run: verify, TimeoutFunc: verifyTimeout, Interruptible: true},
	}
}

// DeprovisionSteps returns the steps that remove what provisioning added, in
// order. The role leaves B's documents before it is deleted: AWS rewrites a
// deleted role's ARN in a principal to its unique ID (Known traps).
// Versioning is never turned off.
func DeprovisionSteps() []StepDef {
	return []StepDef{
		{Name: StepResolveAccounts, Group: 1, Run: resolveAccounts},
		{Name: StepRemoveReplicationRule, Group: 2, Run: removeReplicationRule, Undoes: StepPutReplicationRule},
		{Name: StepRemoveDestinationBucketPolicy, Group: 3, Run: removeDestinationBucketPolicy, Undoes: StepUpdateDestinationBucketPolicy},
		{Name: StepRemoveDestinationKeyPolicy, Group: 3, Run: removeDestinationKeyPolicy, Undoes: StepUpdateDestinationKeyPolicy},
		{Name: StepRemoveSourceKeyPolicy, Group: 3, Run: removeSourceKeyPolicy, Undoes: StepUpdateSourceKeyPolicy},
		{Name: StepDeleteRolePolicy, Group: 4, Run: deleteRolePolicy, Undoes: StepPutRolePolicy},
		{Name: StepDeleteRole, Group: 5, Run: deleteRole, Undoes: StepEnsureReplicationRole},
	}
}

// input is what the policy builders need from the run: the request and the
// role learned so far (the default role name until inspection says otherwise).
func input(run *Run) policy.Input {
	r := run.Replication
	return r.PolicyInput(r.ID, run.Config.TrustConditions, roleName(run))
}

func findings(f Facts) policy.Findings {
	return policy.Findings{DestinationOwnerEnforced: f.DestinationOwnerEnforced, SourceKeyNotDelegated: f.SourceKeyNotDelegated}
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

// withLock runs fn holding the run's advisory locks on keys (documents'
// ARNs), so that concurrent requests never lose each other's statements.
func withLock(ctx context.Context, run *Run, keys []string, fn func() (Result, error)) (Result, error) {
	if run.Lock == nil {
		return fn()
	}
	unlock, err := run.Lock(ctx, keys...)
	if err != nil {
		return Result{}, fmt.Errorf("lock %v: %w", keys, err)
	}
	defer unlock()
	return fn()
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
	after := map[string]identity{}
	for _, side := range []struct {
		name string
		acct *Account
		want string
	}{
		{"source", run.Source, run.Replication.Source.AccountID},
		{"destination", run.Destination, run.Replication.Destination.AccountID},
	} {
		out, err := side.acct.STS.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			return Result{}, classify(err, call{Account: side.want, Action: "sts:GetCallerIdentity", Resource: side.name + " session"})
		}
		got := aws.ToString(out.Account)
		if got != side.want {
			return Result{}, Permanent(fmt.Sprintf("the %s session acts in account %s (%s), not in the request's account %s: check BB_PROVISIONER_ROLE and that the provisioner role ARN names account %s",
				side.name, got, aws.ToString(out.Arn), side.want, side.want), nil)
		}
		after[side.name] = identity{Account: got, ARN: aws.ToString(out.Arn)}
	}
	return Result{After: after}, nil
}
