package provision

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

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

// sharedWrite is how a step records that an earlier write of the document,
// by another request that held it, already gave this request's role its
// grant.
type sharedWrite struct {
	Document  string    `json:"document"`
	Roles     []string  `json:"roles"`
	WrittenBy string    `json:"written_by"`
	WrittenAt time.Time `json:"written_at"`
}

// sharedWriteAge bounds how old a recorded write may be for a request to
// rely on it instead of writing: past it, the document is read and
// written again, which repairs a statement someone edited by hand.
const sharedWriteAge = 10 * time.Minute

// coveredBy reports, while provisioning, whether bucketbridge's last write
// of document (recorded under its lock) already named this request's role:
// the writer computed the document from every holder it could see, this
// request among them. The step then records that write instead of writing
// the document again, so that many requests into one destination cost one
// write, not one each. Removal, a retried step and an old record always
// write.
func coveredBy(ctx context.Context, run *Run, document string) (*sharedWrite, error) {
	role := run.Facts().RoleARN
	if run.Replication.Phase != PhaseProvision || run.Replication.Attempt > 0 || run.Holders == nil || role == "" {
		return nil, nil
	}
	g, err := run.Holders.Granted(ctx, inWorld(run, document))
	if err != nil {
		return nil, err
	}
	if !slices.Contains(g.Roles, role) || run.now().Sub(g.WrittenAt) > sharedWriteAge {
		return nil, nil
	}
	return &sharedWrite{Document: document, Roles: g.Roles, WrittenBy: g.WrittenBy, WrittenAt: g.WrittenAt}, nil
}

// recordGranted records the roles a step's write left in each document.
func recordGranted(ctx context.Context, run *Run, documents map[string][]string) error {
	if run.Holders == nil {
		return nil
	}
	named := make(map[string][]string, len(documents))
	for d, roles := range documents {
		named[inWorld(run, d)] = roles
	}
	return run.Holders.RecordGranted(ctx, run.Replication.ID, named)
}

// forgetGranted clears the records of documents before a step writes them:
// a write whose outcome goes unrecorded (an error, a crash) must leave no
// record that a later request could wrongly rely on.
func forgetGranted(ctx context.Context, run *Run, documents map[string][]string) error {
	cleared := make(map[string][]string, len(documents))
	for d := range documents {
		cleared[d] = nil
	}
	return recordGranted(ctx, run, cleared)
}

// inWorld names document in the records of shared writes.
func inWorld(run *Run, document string) string {
	if run.Config.World == "" {
		return document
	}
	return run.Config.World + " " + document
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
	document := bucketARN(dst)
	// A write that already covers this request makes the holders moot.
	if w, err := coveredBy(ctx, run, document); err != nil || w != nil {
		return Result{After: w}, err
	}
	peers, err := run.peers(ctx, PeerFilter{DestinationBucket: dst.Bucket})
	if err != nil {
		return Result{}, err
	}
	roles := rolesOf(peers, func(p Peer) bool { return p.Destination.AccountID == dst.AccountID })
	granted := map[string][]string{document: roles}
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
		return Result{Before: before, After: after}, recordGranted(ctx, run, granted)
	case sync.Empty:
		if err := forgetGranted(ctx, run, granted); err != nil {
			return Result{}, err
		}
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
		return Result{Changed: true, Before: before, After: after}, recordGranted(ctx, run, granted)
	case current != nil && policy.Equal(*current, sync.Document):
		return Result{Before: before, After: after}, recordGranted(ctx, run, granted)
	}
	if err := forgetGranted(ctx, run, granted); err != nil {
		return Result{}, err
	}
	run.wrotePermissions()
	_, err = acct.S3.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(dst.Bucket), ExpectedBucketOwner: owner, Policy: aws.String(mustJSON(sync.Document))})
	if err != nil {
		return Result{}, writeError(run, err, c)
	}
	if run.confirmWrites() {
		got, err := readBucketPolicy(ctx, acct, dst)
		if err != nil {
			return Result{}, err
		}
		if got == nil || !policy.Equal(*got, sync.Document) {
			return Result{}, fmt.Errorf("confirm bucket policy of %s: it reads back differently", dst.Bucket)
		}
	}
	return Result{Changed: true, Before: before, After: after}, recordGranted(ctx, run, granted)
}

// syncDestinationKeyPolicy computes bucketbridge's statement for Y in KB's
// key policy from the roles of the requests replicating into Y under KB,
// and with it the statements of every other bucket KB's holders replicate
// into: one write then serves all requests waiting for KB's lock.
func syncDestinationKeyPolicy(ctx context.Context, run *Run) (Result, error) {
	dst := run.Replication.Destination
	return syncKeyPolicy(ctx, run, run.Destination, dst, PeerFilter{DestinationKey: dst.KMSKeyARN},
		func(p Peer) (Side, bool) { return p.Destination, true }, policy.SyncDestinationKeyPolicy)
}

// syncSourceKeyPolicy computes bucketbridge's statement for X in KA's key
// policy from the roles of the requests from X whose key does not delegate
// to A's IAM (when it does, the role's own policy is enough and the
// statement is not needed), and with it those of KA's other such buckets.
func syncSourceKeyPolicy(ctx context.Context, run *Run) (Result, error) {
	src := run.Replication.Source
	return syncKeyPolicy(ctx, run, run.Source, src, PeerFilter{SourceKey: src.KMSKeyARN},
		func(p Peer) (Side, bool) { return p.Source, p.Facts.SourceKeyNotDelegated }, policy.SyncSourceKeyPolicy)
}

// needsNoSourceKeyStatement skips the source key step of a request whose
// source key delegates to its account's IAM: the role's own policy is
// enough. Its removal still recomputes the statement, which an earlier
// request may have needed.
func needsNoSourceKeyStatement(run *Run) bool {
	return run.Replication.Phase == PhaseProvision && !run.Facts().SourceKeyNotDelegated
}

// keyGrants groups the roles of the peers using own's key by the bucket
// they use it for (sideOf picks the side, and whether the peer needs a
// statement at all). own's bucket comes first, even with no role left, so
// that removal empties its statement; the others follow by name.
func keyGrants(peers []Peer, own Side, sideOf func(Peer) (Side, bool)) []policy.Grant {
	byBucket := map[string]*policy.Grant{own.Bucket: {Bucket: own.Bucket, Region: own.Region}}
	for _, p := range peers {
		side, needs := sideOf(p)
		if !needs || p.Facts.RoleARN == "" || side.KMSKeyARN != own.KMSKeyARN {
			continue
		}
		g, ok := byBucket[side.Bucket]
		if !ok {
			g = &policy.Grant{Bucket: side.Bucket, Region: side.Region}
			byBucket[side.Bucket] = g
		}
		g.Roles = append(g.Roles, p.Facts.RoleARN)
	}
	out := []policy.Grant{*byBucket[own.Bucket]}
	for _, b := range slices.Sorted(maps.Keys(byBucket)) {
		if b != own.Bucket {
			out = append(out, *byBucket[b])
		}
	}
	for i := range out {
		slices.Sort(out[i].Roles)
		out[i].Roles = slices.Compact(out[i].Roles)
	}
	return out
}

// keyDocument names a key's statement for one bucket in the records of
// shared writes.
func keyDocument(key, bucket string) string { return key + " " + bucket }

// syncKeyPolicy reads a side's key policy, recomputes with sync
// bucketbridge's statement for each bucket the key's holders (the peers
// that holders selects, on the side sideOf picks) use it for, the side's
// own bucket first, and writes the policy when that changes it. It never
// sets BypassPolicyLockoutSafetyCheck.
func syncKeyPolicy(ctx context.Context, run *Run, acct *Account, side Side, holders PeerFilter, sideOf func(Peer) (Side, bool),
	sync func(policy.Document, policy.Grant) (policy.Sync, error)) (Result, error) {
	key := side.KMSKeyARN
	// A write that already covers this request makes the holders moot.
	if w, err := coveredBy(ctx, run, keyDocument(key, side.Bucket)); err != nil || w != nil {
		return Result{After: w}, err
	}
	peers, err := run.peers(ctx, holders)
	if err != nil {
		return Result{}, err
	}
	grants := keyGrants(peers, side, sideOf)
	c := call{Account: side.AccountID, Action: "kms:PutKeyPolicy", Resource: key}
	current, err := readKeyPolicy(ctx, acct, side)
	if err != nil {
		return Result{}, err
	}
	before := policyChange{Key: key, Policy: &current}
	doc := current
	var dropped []policy.DroppedPrincipal
	granted := map[string][]string{}
	for _, g := range grants {
		s, err := sync(doc, g)
		if err != nil {
			return Result{}, classify(foreignPrincipal(err, side.AccountID, "key "+key), c)
		}
		doc, dropped = s.Document, append(dropped, s.Dropped...)
		granted[keyDocument(key, g.Bucket)] = g.Roles
	}
	after := policyChange{Key: key, Policy: &doc, Roles: grants[0].Roles, Dropped: dropped}
	if policy.Equal(current, doc) {
		return Result{Before: before, After: after}, recordGranted(ctx, run, granted)
	}
	if err := forgetGranted(ctx, run, granted); err != nil {
		return Result{}, err
	}
	run.wrotePermissions()
	_, err = acct.KMS.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{
		KeyId: aws.String(key), PolicyName: aws.String("default"), Policy: aws.String(mustJSON(doc)),
	})
	if err != nil {
		return Result{}, writeError(run, err, c)
	}
	if run.confirmWrites() {
		got, err := readKeyPolicy(ctx, acct, side)
		if err != nil {
			return Result{}, err
		}
		if !policy.Equal(got, doc) {
			return Result{}, fmt.Errorf("confirm key policy of %s: it reads back differently", key)
		}
	}
	return Result{Changed: true, Before: before, After: after}, recordGranted(ctx, run, granted)
}
