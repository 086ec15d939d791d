package provision

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/bucketbridge/bucketbridge/internal/policy"
)

// writeError classifies the error of a write that names the replication role
// as a principal: right after bucketbridge created the role, S3 and KMS may
// reject it as invalid until IAM has propagated it, so that is retried within
// the propagation timeout; later it is a role that does not exist.
func writeError(run *Run, err error, c call) error {
	return run.whilePropagating(classify(err, c), run.Facts().RoleCreatedAt)
}

// keyPolicyChange is how key policy steps record what they did.
type keyPolicyChange struct {
	Key    string          `json:"key"`
	Policy policy.Document `json:"policy"`
}

// bucketPolicyChange is how bucket policy steps record what they did; a nil
// Policy means the bucket has none.
type bucketPolicyChange struct {
	Bucket string           `json:"bucket"`
	Policy *policy.Document `json:"policy"`
}

// updateDestinationKeyPolicy adds the role to bucketbridge's statement in KB's
// key policy (docs/ARCHITECTURE.md, The documents), keeping every other statement.
func updateDestinationKeyPolicy(ctx context.Context, run *Run) (Result, error) {
	in := input(run)
	return editKeyPolicy(ctx, run, run.Destination, run.Replication.Destination, nil, func(d policy.Document) (policy.Document, error) {
		return policy.MergeKeyPolicy(d, policy.DestinationKeyStatement(in))
	})
}

// updateSourceKeyPolicy adds the role to bucketbridge's statement in KA's key
// policy, only when KA's policy does not delegate to A's IAM.
func updateSourceKeyPolicy(ctx context.Context, run *Run) (Result, error) {
	if !run.Facts().SourceKeyNotDelegated {
		return Result{Skipped: true}, nil
	}
	in := input(run)
	return editKeyPolicy(ctx, run, run.Source, run.Replication.Source, nil, func(d policy.Document) (policy.Document, error) {
		return policy.MergeKeyPolicy(d, policy.SourceKeyStatement(in))
	})
}

// removeDestinationKeyPolicy takes the role out of bucketbridge's statement in
// KB's key policy; the statement goes when no role is left in it.
func removeDestinationKeyPolicy(ctx context.Context, run *Run) (Result, error) {
	role := input(run).RoleARN()
	dst := run.Replication.Destination
	sid := policy.KeyStatementSid(policy.SidReplicaEncrypt, dst.Bucket)
	return editKeyPolicy(ctx, run, run.Destination, dst, []string{role}, func(d policy.Document) (policy.Document, error) {
		if others, err := roleStillReplicates(ctx, run, dst.Bucket); err != nil || len(others) > 0 {
			return d, err
		}
		return policy.RemoveFromKeyPolicy(d, role, sid), nil
	})
}

// removeSourceKeyPolicy takes the role out of bucketbridge's statement in KA's
// key policy, if it was ever added.
func removeSourceKeyPolicy(ctx context.Context, run *Run) (Result, error) {
	role := input(run).RoleARN()
	sid := policy.KeyStatementSid(policy.SidReplicaDecrypt, run.Replication.Source.Bucket)
	return editKeyPolicy(ctx, run, run.Source, run.Replication.Source, []string{role}, func(d policy.Document) (policy.Document, error) {
		if others, err := roleStillReplicates(ctx, run, ""); err != nil || len(others) > 0 {
			return d, err
		}
		return policy.RemoveFromKeyPolicy(d, role, sid), nil
	})
}

// editKeyPolicy is a read-modify-write of a key policy under the key's lock,
// writing only when edit changes what the policy grants. It never sets
// BypassPolicyLockoutSafetyCheck.
func editKeyPolicy(ctx context.Context, run *Run, acct *Account, side Side, also []string, edit func(policy.Document) (policy.Document, error)) (Result, error) {
	key := side.KMSKeyARN
	c := call{Account: side.AccountID, Action: "kms:PutKeyPolicy", Resource: key}
	return withLock(ctx, run, append([]string{key}, also...), func() (Result, error) {
		current, err := readKeyPolicy(ctx, acct, side)
		if err != nil {
			return Result{}, err
		}
		before := keyPolicyChange{Key: key, Policy: current}
		want, err := edit(current)
		if err != nil {
			return Result{}, classify(err, c)
		}
		if policy.Equal(current, want) {
			return Result{Before: before, After: before}, nil
		}
		_, err = acct.KMS.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{
			KeyId: aws.String(key), PolicyName: aws.String("default"), Policy: aws.String(mustJSON(want)),
		})
		if err != nil {
			return Result{}, writeError(run, err, c)
		}
		got, err := readKeyPolicy(ctx, acct, side)
		if err != nil {
			return Result{}, err
		}
		if !policy.Equal(got, want) {
			return Result{}, fmt.Errorf("confirm key policy of %s: it reads back differently", key)
		}
		return Result{Changed: true, Before: before, After: keyPolicyChange{Key: key, Policy: want}}, nil
	})
}

// updateDestinationBucketPolicy adds the role to bucketbridge's two statements
// in Y's bucket policy (docs/ARCHITECTURE.md, The documents), keeping every other statement.
func updateDestinationBucketPolicy(ctx context.Context, run *Run) (Result, error) {
	in := input(run)
	return editBucketPolicy(ctx, run, run.Destination, run.Replication.Destination, nil, func(d policy.Document) (policy.Document, bool, error) {
		out, err := policy.MergeBucketPolicy(d, policy.DestinationBucketStatements(in)...)
		return out, false, err
	})
}

// removeDestinationBucketPolicy takes the role out of bucketbridge's
// statements in Y's bucket policy, dropping a statement left without
// principals and the policy itself when nothing is left.
func removeDestinationBucketPolicy(ctx context.Context, run *Run) (Result, error) {
	role := input(run).RoleARN()
	dst := run.Replication.Destination
	return editBucketPolicy(ctx, run, run.Destination, dst, []string{role}, func(d policy.Document) (policy.Document, bool, error) {
		if others, err := roleStillReplicates(ctx, run, dst.Bucket); err != nil || len(others) > 0 {
			return d, false, err
		}
		out, del := policy.RemoveFromBucketPolicy(d, role, policy.SidReplicaObjects, policy.SidReplicaBucket)
		return out, del, nil
	})
}

// roleStillReplicates lists the replication role's inline policies, other
// than this request's, that still grant replicating into dstBucket (any
// bucket when dstBucket is ""). Requests from one source bucket share its
// role (docs/ARCHITECTURE.md, The documents), so a request into the same destination with another
// prefix still needs the role in the destination's statements, and any
// other request still needs it in the source key's. Callers hold the role's
// lock: put_role_policy takes it too and runs before the statements are
// merged, so a request being provisioned meanwhile either is seen here or
// merges the role back in after this removal.
func roleStillReplicates(ctx context.Context, run *Run, dstBucket string) ([]string, error) {
	in := input(run)
	own := policy.RolePolicyName(run.Replication.Destination.Bucket, run.Replication.Rule.Prefix)
	policies, err := readRolePolicies(ctx, run.Source, roleName(run))
	switch {
	case IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, classify(err, call{Account: run.Replication.Source.AccountID, Action: "iam:ListRolePolicies", Resource: in.RoleARN()})
	}
	var others []string
	for name, doc := range policies {
		if name != own && grantsReplicationInto(doc, dstBucket) {
			others = append(others, name)
		}
	}
	slices.Sort(others)
	return others, nil
}

// grantsReplicationInto reports whether doc allows s3:ReplicateObject on
// objects of bucket (of any bucket when bucket is "").
func grantsReplicationInto(doc policy.Document, bucket string) bool {
	for _, st := range doc.Statement {
		if st.Effect != "Allow" || !slices.ContainsFunc(st.Action, func(a string) bool { return strings.EqualFold(a, "s3:ReplicateObject") }) {
			continue
		}
		for _, r := range st.Resource {
			_, object, ok := strings.Cut(strings.TrimPrefix(r, "arn:"), ":s3:::")
			if ok && (bucket == "" || strings.HasPrefix(object, bucket+"/")) {
				return true
			}
		}
	}
	return false
}

// editBucketPolicy is a read-modify-write of a bucket policy under the
// bucket's lock (and the locks named by also); edit returns the new policy,
// or asks for its deletion.
func editBucketPolicy(ctx context.Context, run *Run, acct *Account, side Side, also []string, edit func(policy.Document) (policy.Document, bool, error)) (Result, error) {
	arn := bucketARN(side)
	owner := aws.String(side.AccountID)
	c := call{Account: side.AccountID, Action: "s3:PutBucketPolicy", Resource: side.Bucket}
	return withLock(ctx, run, append([]string{arn}, also...), func() (Result, error) {
		current, err := readBucketPolicy(ctx, acct, side)
		if err != nil {
			return Result{}, err
		}
		before := bucketPolicyChange{Bucket: side.Bucket, Policy: current}
		var doc policy.Document
		if current != nil {
			doc = *current
		}
		want, del, err := edit(doc)
		if err != nil {
			return Result{}, classify(err, c)
		}
		switch {
		case del && current == nil:
			return Result{Before: before, After: before}, nil
		case del:
			if _, err := acct.S3.DeleteBucketPolicy(ctx, &s3.DeleteBucketPolicyInput{Bucket: aws.String(side.Bucket), ExpectedBucketOwner: owner}); err != nil && !IsNotFound(err) {
				return Result{}, classify(err, call{Account: side.AccountID, Action: "s3:DeleteBucketPolicy", Resource: side.Bucket})
			}
			got, err := readBucketPolicy(ctx, acct, side)
			if err != nil {
				return Result{}, err
			}
			if got != nil {
				return Result{}, fmt.Errorf("confirm deletion of the bucket policy of %s: it is still there", side.Bucket)
			}
			return Result{Changed: true, Before: before, After: bucketPolicyChange{Bucket: side.Bucket}}, nil
		case current != nil && policy.Equal(*current, want):
			return Result{Before: before, After: before}, nil
		}
		_, err = acct.S3.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(side.Bucket), ExpectedBucketOwner: owner, Policy: aws.String(mustJSON(want))})
		if err != nil {
			return Result{}, writeError(run, err, c)
		}
		got, err := readBucketPolicy(ctx, acct, side)
		if err != nil {
			return Result{}, err
		}
		if got == nil || !policy.Equal(*got, want) {
			return Result{}, fmt.Errorf("confirm bucket policy of %s: it reads back differently", side.Bucket)
		}
		return Result{Changed: true, Before: before, After: bucketPolicyChange{Bucket: side.Bucket, Policy: &want}}, nil
	})
}
