package provision

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/bucketbridge/bucketbridge/internal/policy"
)

// roleNameOf returns the name of a role ARN without path.
func roleNameOf(arn string) string { return arn[strings.LastIndex(arn, "/")+1:] }

// ruleState is how the rule steps record a configuration; nil when the bucket
// has none.
type ruleState struct {
	Bucket        string                           `json:"bucket"`
	Configuration *policy.ReplicationConfiguration `json:"configuration"`
}

// putReplicationRule merges the request's rule into X's replication
// configuration (docs/ARCHITECTURE.md, The documents), last, after every permission it needs. Right
// after bucketbridge created the role or enabled versioning, S3 may not see
// them yet: those answers are retried within the propagation timeout.
func putReplicationRule(ctx context.Context, run *Run) (Result, error) {
	in := input(run)
	facts := run.Facts()
	side := run.Replication.Source
	role := in.RoleARN()
	rule := policy.ReplicationRuleFor(in, findings(facts))
	c := call{Account: side.AccountID, Action: "s3:PutReplicationConfiguration", Resource: side.Bucket}
	current, err := readReplication(ctx, run.Source, side)
	if err != nil {
		return Result{}, err
	}
	before := ruleState{Bucket: side.Bucket, Configuration: current}
	want, err := policy.MergeReplicationRule(current, role, rule)
	var conflict *policy.RoleConflictError
	if errors.As(err, &conflict) {
		if !facts.RoleAdopted || roleNameOf(conflict.Existing) != facts.RoleName {
			return Result{}, Permanent(fmt.Sprintf("the replication configuration of source bucket %s now names role %s, not %s, which inspection found: it changed since inspection; deprovision this request (DELETE it) and resubmit it so that inspection adopts the role the configuration names now", side.Bucket, conflict.Existing, role), err)
		}
		role = conflict.Existing
		want, err = policy.MergeReplicationRule(current, role, rule)
	}
	if err != nil {
		return Result{}, classify(err, c)
	}
	warnings := overlapWarnings(want, rule, side)
	if current != nil && policy.ReplicationEqual(*current, want) {
		return Result{Before: before, After: before, Warnings: warnings}, nil
	}
	sdk, err := toSDKReplication(want)
	if err != nil {
		return Result{}, err
	}
	_, err = run.Source.S3.PutBucketReplication(ctx, &s3.PutBucketReplicationInput{
		Bucket: aws.String(side.Bucket), ExpectedBucketOwner: aws.String(side.AccountID), ReplicationConfiguration: sdk,
	})
	if err != nil {
		// Right after bucketbridge enabled versioning, S3 may not see it yet.
		return Result{}, run.whilePropagating(classify(err, c), facts.VersioningEnabledAt)
	}
	if run.confirmWrites() {
		got, err := readReplication(ctx, run.Source, side)
		if err != nil {
			return Result{}, err
		}
		if err := confirmRule(got, role, rule); err != nil {
			return Result{}, fmt.Errorf("confirm replication rule %s on %s: %w", rule.ID, side.Bucket, err)
		}
	}
	return Result{Changed: true, Before: before, After: ruleState{Bucket: side.Bucket, Configuration: &want}, Warnings: warnings}, nil
}

// overlapWarnings warns about every enabled rule of someone else's in the
// configuration c (as merged) that selects some of the keys the request's
// rule selects. bucketbridge's rule takes the highest priority, and S3
// replicates an object that several rules to one destination bucket select
// by the highest-priority rule only, so for those keys the request's rule
// silently replaces that rule's settings; into another destination both
// replicate the object. Either way the caller should know, and only the
// owner of the other rule can change it.
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/replication-add-config.html
func overlapWarnings(c policy.ReplicationConfiguration, rule policy.ReplicationRule, side Side) []Warning {
	var ours int32
	for _, r := range c.Rules {
		if r.ID == rule.ID && r.Priority != nil {
			ours = *r.Priority
		}
	}
	mine, _ := policy.RulePrefix(rule)
	var out []Warning
	for _, r := range policy.OverlappingRules(c, rule) {
		prefix, tagged := policy.RulePrefix(r)
		keys := fmt.Sprintf("keys under %q", prefix)
		if len(prefix) < len(mine) {
			keys = fmt.Sprintf("keys under %q", mine)
		}
		if tagged {
			keys += " that carry its tags"
		}
		var prio int32
		if r.Priority != nil {
			prio = *r.Priority
		}
		var dst string
		if r.Destination != nil {
			dst = r.Destination.Bucket
		}
		if dst == rule.Destination.Bucket {
			out = append(out, warn(WarningOverlappingRule,
				"rule %q (priority %d) on source bucket %s, which bucketbridge does not own, also replicates %s into %s. bucketbridge's rule %s has priority %d, the highest, and S3 replicates an object that several rules to one destination select by the highest-priority rule only: for those keys bucketbridge's rule (its replica key, storage class and delete marker setting) now applies instead of rule %q. If that is not intended, its owner can give rule %q a priority above %d or narrow its prefix",
				r.ID, prio, side.Bucket, keys, dst, rule.ID, ours, r.ID, r.ID, ours))
			continue
		}
		out = append(out, warn(WarningOverlappingRule,
			"rule %q (priority %d) on source bucket %s, which bucketbridge does not own, also replicates %s, into %s: S3 replicates those objects to both destinations (and bills both); bucketbridge's rule %s, priority %d, does not change what rule %q does",
			r.ID, prio, side.Bucket, keys, cmp.Or(dst, "its destination"), rule.ID, ours, r.ID))
	}
	return out
}

// confirmRule checks the rule read back by its identity and destination
// only: moto drops SourceSelectionCriteria and rewrites Filter and
// DeleteMarkerReplication on read (docs/ARCHITECTURE.md, Where moto differs from AWS), and the write was decided by a
// full comparison already.
func confirmRule(got *policy.ReplicationConfiguration, role string, want policy.ReplicationRule) error {
	if got == nil {
		return errors.New("no replication configuration reads back")
	}
	if got.Role != role {
		return fmt.Errorf("the configuration reads back role %s, not %s", got.Role, role)
	}
	for _, r := range got.Rules {
		if r.ID != want.ID {
			continue
		}
		d, w := r.Destination, want.Destination
		switch {
		case r.Status != want.Status:
			return fmt.Errorf("the rule reads back status %s", r.Status)
		case d == nil || d.Bucket != w.Bucket || d.Account != w.Account:
			return errors.New("the rule reads back another destination")
		case d.EncryptionConfiguration == nil || d.EncryptionConfiguration.ReplicaKmsKeyID != w.EncryptionConfiguration.ReplicaKmsKeyID:
			return errors.New("the rule reads back another replica key")
		}
		return nil
	}
	return errors.New("the rule is not in the configuration read back")
}

// removeReplicationRule takes the request's rule out of X's configuration,
// deleting the configuration when it was the last rule.
func removeReplicationRule(ctx context.Context, run *Run) (Result, error) {
	side := run.Replication.Source
	id := policy.RuleID(run.Replication.ID)
	owner := aws.String(side.AccountID)
	current, err := readReplication(ctx, run.Source, side)
	if err != nil {
		return Result{}, err
	}
	before := ruleState{Bucket: side.Bucket, Configuration: current}
	if current == nil || !hasRule(current, id) {
		return Result{Before: before, After: before}, nil
	}
	if run.Facts().RoleName == "" && current.Role != "" {
		// Provisioning never got to record the role (it failed early):
		// the configuration says which role B's documents name.
		name := roleNameOf(current.Role)
		run.Learn(func(f *Facts) {
			f.RoleName = name
			f.RoleAdopted = name != policy.RoleName(side.Bucket)
		})
	}
	out, del := policy.RemoveReplicationRule(*current, id)
	if del {
		_, err = run.Source.S3.DeleteBucketReplication(ctx, &s3.DeleteBucketReplicationInput{Bucket: aws.String(side.Bucket), ExpectedBucketOwner: owner})
		if err != nil && !IsNotFound(err) {
			return Result{}, classify(err, call{Account: side.AccountID, Action: "s3:PutReplicationConfiguration", Resource: side.Bucket})
		}
	} else {
		sdk, err := toSDKReplication(out)
		if err != nil {
			return Result{}, err
		}
		_, err = run.Source.S3.PutBucketReplication(ctx, &s3.PutBucketReplicationInput{Bucket: aws.String(side.Bucket), ExpectedBucketOwner: owner, ReplicationConfiguration: sdk})
		if err != nil {
			return Result{}, classify(err, call{Account: side.AccountID, Action: "s3:PutReplicationConfiguration", Resource: side.Bucket})
		}
	}
	got, err := readReplication(ctx, run.Source, side)
	if err != nil {
		return Result{}, err
	}
	if got != nil && hasRule(got, id) {
		return Result{}, fmt.Errorf("confirm removal of rule %s from %s: it is still there", id, side.Bucket)
	}
	after := ruleState{Bucket: side.Bucket}
	if !del {
		after.Configuration = &out
	}
	return Result{Changed: true, Before: before, After: after}, nil
}

func hasRule(c *policy.ReplicationConfiguration, id string) bool {
	for _, r := range c.Rules {
		if r.ID == id {
			return true
		}
	}
	return false
}
