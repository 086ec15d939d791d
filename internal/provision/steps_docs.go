package provision

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/bucketbridge/bucketbridge/internal/policy"
)

// The bucket and key policy steps compute bucketbridge's statements in a
// document from every request that holds it (Run.peers), under the
// document's lock, and write the document only when that changes it. The
// same function provisions and removes: provisioning adds this request's
// role because the request is among the holders, removal takes it out
// because it no longer is, and another request's role stays as long as that
// request holds the document. Statements are found by Sid; a principal that
// is not the role of a holder (a deleted role's AROA… ID, a wildcard) is
// dropped from them and recorded.

// writeError classifies the error of a write that names the replication role
// as a principal: right after bucketbridge created the role, S3 and KMS may
// reject it as invalid until IAM has propagated it, so that is retried within
// the propagation timeout; later it is a role that does not exist.
func writeError(run *Run, err error, c call) error {
	return run.whilePropagating(classify(err, c), run.Facts().RoleCreatedAt)
}

// policyChange is how the bucket and key policy steps record what they did.
type policyChange struct {
	// Bucket or Key names the document's owner.
	Bucket string `json:"bucket,omitempty"`
	Key    string `json:"key,omitempty"`
	// Policy is the document; null for a bucket without a policy.
	Policy *policy.Document `json:"policy"`
	// Roles are the roles bucketbridge's statements name (after only).
	Roles []string `json:"roles,omitempty"`
	// Dropped are the principals taken out of bucketbridge's statements
	// because they are not the role of a request holding the document.
	Dropped []policy.DroppedPrincipal `json:"dropped,omitempty"`
}

// foreignPrincipal fails a step whose document holds, in a statement
// bucketbridge does not own, a principal AWS would refuse on every put.
func foreignPrincipal(err error, account, resource string) error {
	var fe *policy.ForeignPrincipalError
	if errors.As(err, &fe) {
		return Permanent(fmt.Sprintf("the policy of %s in account %s cannot be written back: %s", resource, account, fe.Error()), err)
	}
	return err
}

// syncDestinationBucketPolicy computes bucketbridge's two statements in Y's
// bucket policy from the roles of the requests replicating into Y, and
// deletes the policy when nothing else is left in it.
func syncDestinationBucketPolicy(ctx context.Context, run *Run) (Result, error) {
	dst := run.Replication.Destination
	peers, err := run.peers(ctx, PeerFilter{DestinationBucket: dst.Bucket})
	if err != nil {
		return Result{}, err
	}
	roles := rolesOf(peers, func(p Peer) bool { return p.Destination.AccountID == dst.AccountID })
	acct, owner := run.Destination, aws.String(dst.AccountID)
	c := call{Account: dst.AccountID, Action: "s3:PutBucketPolicy", Resource: dst.Bucket}

	current, err := readBucketPolicy(ctx, acct, dst)
	if err != nil {
		return Result{}, err
	}
	before := policyChange{Bucket: dst.Bucket, Policy: current}
	var doc policy.Document
	if current != nil {
		doc = *current
	}
	sync, err := policy.SyncBucketPolicy(doc, policy.Grant{Bucket: dst.Bucket, Region: dst.Region, Roles: roles})
	if err != nil {
		return Result{}, classify(foreignPrincipal(err, dst.AccountID, "bucket "+dst.Bucket), c)
	}
	after := policyChange{Bucket: dst.Bucket, Policy: &sync.Document, Roles: roles, Dropped: sync.Dropped}
	switch {
	case sync.Empty && current == nil:
		after.Policy = nil
		return Result{Before: before, After: after}, nil
	case sync.Empty:
		run.wrotePermissions()
		if _, err := acct.S3.DeleteBucketPolicy(ctx, &s3.DeleteBucketPolicyInput{Bucket: aws.String(dst.Bucket), ExpectedBucketOwner: owner}); err != nil && !IsNotFound(err) {
			return Result{}, classify(err, call{Account: dst.AccountID, Action: "s3:DeleteBucketPolicy", Resource: dst.Bucket})
		}
		got, err := readBucketPolicy(ctx, acct, dst)
		if err != nil {
			return Result{}, err
		}
		if got != nil {
			return Result{}, fmt.Errorf("confirm deletion of the bucket policy of %s: it is still there", dst.Bucket)
		}
		after.Policy = nil
		return Result{Changed: true, Before: before, After: after}, nil
	case current != nil && policy.Equal(*current, sync.Document):
		return Result{Before: before, After: after}, nil
	}
	run.wrotePermissions()
	_, err = acct.S3.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(dst.Bucket), ExpectedBucketOwner: owner, Policy: aws.String(mustJSON(sync.Document))})
	if err != nil {
		return Result{}, writeError(run, err, c)
	}
	got, err := readBucketPolicy(ctx, acct, dst)
	if err != nil {
		return Result{}, err
	}
	if got == nil || !policy.Equal(*got, sync.Document) {
		return Result{}, fmt.Errorf("confirm bucket policy of %s: it reads back differently", dst.Bucket)
	}
	return Result{Changed: true, Before: before, After: after}, nil
}

// syncDestinationKeyPolicy computes bucketbridge's statement for Y in KB's
// key policy from the roles of the requests replicating into Y under KB.
func syncDestinationKeyPolicy(ctx context.Context, run *Run) (Result, error) {
	dst := run.Replication.Destination
	peers, err := run.peers(ctx, PeerFilter{DestinationBucket: dst.Bucket})
	if err != nil {
		return Result{}, err
	}
	roles := rolesOf(peers, func(p Peer) bool { return p.Destination.KMSKeyARN == dst.KMSKeyARN })
	return syncKeyPolicy(ctx, run, run.Destination, dst, func(d policy.Document) (policy.Sync, error) {
		return policy.SyncDestinationKeyPolicy(d, policy.Grant{Bucket: dst.Bucket, Region: dst.Region, Roles: roles})
	}, roles)
}

// syncSourceKeyPolicy computes bucketbridge's statement for X in KA's key
// policy from the roles of the requests from X whose key does not delegate
// to A's IAM (when it does, the role's own policy is enough and the
// statement is not needed).
func syncSourceKeyPolicy(ctx context.Context, run *Run) (Result, error) {
	src := run.Replication.Source
	if run.Replication.Phase == PhaseProvision && !run.Facts().SourceKeyNotDelegated {
		return Result{Skipped: true}, nil
	}
	peers, err := run.peers(ctx, PeerFilter{SourceBucket: src.Bucket})
	if err != nil {
		return Result{}, err
	}
	roles := rolesOf(peers, func(p Peer) bool {
		return p.Source.KMSKeyARN == src.KMSKeyARN && p.Facts.SourceKeyNotDelegated
	})
	return syncKeyPolicy(ctx, run, run.Source, src, func(d policy.Document) (policy.Sync, error) {
		return policy.SyncSourceKeyPolicy(d, policy.Grant{Bucket: src.Bucket, Region: src.Region, Roles: roles})
	}, roles)
}

// syncKeyPolicy reads a side's key policy, recomputes bucketbridge's
// statement with sync and writes the policy when that changes it. It never
// sets BypassPolicyLockoutSafetyCheck.
func syncKeyPolicy(ctx context.Context, run *Run, acct *Account, side Side, sync func(policy.Document) (policy.Sync, error), roles []string) (Result, error) {
	key := side.KMSKeyARN
	c := call{Account: side.AccountID, Action: "kms:PutKeyPolicy", Resource: key}
	current, err := readKeyPolicy(ctx, acct, side)
	if err != nil {
		return Result{}, err
	}
	before := policyChange{Key: key, Policy: &current}
	s, err := sync(current)
	if err != nil {
		return Result{}, classify(foreignPrincipal(err, side.AccountID, "key "+key), c)
	}
	after := policyChange{Key: key, Policy: &s.Document, Roles: roles, Dropped: s.Dropped}
	if policy.Equal(current, s.Document) {
		return Result{Before: before, After: after}, nil
	}
	run.wrotePermissions()
	_, err = acct.KMS.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{
		KeyId: aws.String(key), PolicyName: aws.String("default"), Policy: aws.String(mustJSON(s.Document)),
	})
	if err != nil {
		return Result{}, writeError(run, err, c)
	}
	got, err := readKeyPolicy(ctx, acct, side)
	if err != nil {
		return Result{}, err
	}
	if !policy.Equal(got, s.Document) {
		return Result{}, fmt.Errorf("confirm key policy of %s: it reads back differently", key)
	}
	return Result{Changed: true, Before: before, After: after}, nil
}
