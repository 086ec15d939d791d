package awsfake

import (
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// S3 replication, as the fake performs it. When PutObject stores an object
// that an enabled rule of the bucket's replication configuration selects,
// the object is marked PENDING and, after Config.ReplicationDelay, the fake
// checks — with the documents in place at that moment — everything S3
// needs to replicate it (S3 User Guide, "Setting up permissions for live
// replication", "Replicating encrypted objects", "Object Lock
// considerations", "Troubleshooting replication"):
//
//   - the source bucket still has versioning Enabled;
//   - the rule's role exists in the source bucket's account, is visible
//     (RoleInvisibleFor), and its trust policy lets s3.amazonaws.com
//     sts:AssumeRole (with aws:SourceAccount and aws:SourceArn set);
//   - the destination bucket exists and has versioning Enabled, and Object
//     Lock too when the source bucket has it;
//   - the role may s3:GetObjectVersionForReplication on the source object
//     (and s3:GetObjectRetention and s3:GetObjectLegalHold when the source
//     bucket has Object Lock);
//   - for an SSE-KMS object, the role may kms:Decrypt with the object's key
//     (identity policies and key policy, kms:ViaService
//     s3.<region>.amazonaws.com, kms:EncryptionContext:aws:s3:arn the object
//     ARN, or the bucket ARN with S3 Bucket Keys);
//   - the role may s3:ReplicateObject on the destination object (and
//     s3:ObjectOwnerOverrideToBucketOwner with AccessControlTranslation),
//     by its identity policies and, across accounts, the destination bucket
//     policy;
//   - an SSE-KMS object's replica is encrypted with ReplicaKmsKeyID, which
//     must exist in the destination region and be enabled, and the role may
//     kms:Encrypt with it, by identity and key policy.
//
// The role's identity policies are its inline policies and the default
// versions of its attached managed policies, limited by its permissions
// boundary when it has one.
//
// A replica keeps the source object's kind of encryption, as the S3 User
// Guide says ("Replicating encrypted objects", "How default bucket
// encryption affects replication",
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/replication-config-for-kms-objects.html):
// an SSE-S3 source object replicates as SSE-S3, whatever the destination's
// default encryption and even when the rule selects SSE-KMS objects with
// SseKmsEncryptedObjects; an SSE-KMS object is re-encrypted with
// ReplicaKmsKeyID; only an unencrypted object (possible only in a bucket
// without default encryption, which AWS no longer allows) gets the
// destination's default encryption (kms:GenerateDataKey with its default
// key). A replica of a source object under Object Lock keeps its retention
// and legal hold; a replica of one without retention gets the destination
// bucket's default retention, if it has one (S3 User Guide, "What does
// Amazon S3 replicate?": "If you don't have retention controls applied to
// the objects in your source bucket, and you replicate into destination
// buckets that have a default retention period set, the destination
// bucket's default retention period is applied to your object replicas").
//
// If all hold, the source version becomes COMPLETED and the destination
// gets a version with the same version ID, status REPLICA. Otherwise the
// source becomes FAILED and Cloud.ReplicationFailure returns the reason,
// prefixed with the failure reason S3 reports in its replication failure
// events (S3 User Guide, "Amazon S3 replication failure reasons",
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/replication-failure-codes.html):
// AssumeRoleNotPermitted, DstBucketNotFound, DstBucketUnversioned,
// DstBucketObjectLockConfigMissing, SrcGetObjectNotPermitted,
// SrcGetRetentionNotPermitted, SrcGetLegalHoldNotPermitted,
// DstPutObjectNotPermitted, SrcKmsKeyInvalidState, DstKmsKeyInvalidState,
// DstKmsKeyNotFound, SrcBucketReplicationConfigMissing.
//
// Simplifications: only the highest-priority matching rule is applied
// (S3 can replicate to several destinations); Tag filters never match (the
// fake keeps no object tags); replicas are never replicated again; delete
// markers are not replicated.

// scheduleReplicationLocked marks o PENDING and schedules its replication
// when b's configuration selects it.
func (c *Cloud) scheduleReplicationLocked(b *bucket, o *object) {
	if b.replication == nil || b.versioning != s3types.BucketVersioningStatusEnabled || o.replication == s3types.ReplicationStatusReplica {
		return
	}
	rule := selectRule(b.replication, o)
	if rule == nil {
		return
	}
	o.replication = s3types.ReplicationStatusPending
	ref := objectRef{b.name, o.key, o.versionID}
	c.pending[ref] = pendingReplication{role: aws.ToString(b.replication.Role), rule: clone(rule)}
	c.afterDelay(ref)
}

// afterDelay decides the pending replication of ref after the configured
// delay.
func (c *Cloud) afterDelay(ref objectRef) {
	delay := c.cfg.ReplicationDelay
	if delay < 0 {
		delay = 0
	}
	time.AfterFunc(delay, func() { c.replicate(ref) })
}

// selectRule returns the enabled rule with the highest priority whose
// filter selects o, or nil. SSE-KMS objects need SseKmsEncryptedObjects.
func selectRule(rc *s3types.ReplicationConfiguration, o *object) *s3types.ReplicationRule {
	var best *s3types.ReplicationRule
	for i := range rc.Rules {
		r := &rc.Rules[i]
		if r.Status != s3types.ReplicationRuleStatusEnabled || !ruleSelects(r, o.key) {
			continue
		}
		if o.kmsKey != "" {
			ssc := r.SourceSelectionCriteria
			if ssc == nil || ssc.SseKmsEncryptedObjects == nil || ssc.SseKmsEncryptedObjects.Status != s3types.SseKmsEncryptedObjectsStatusEnabled {
				continue
			}
		}
		if best == nil || aws.ToInt32(r.Priority) > aws.ToInt32(best.Priority) {
			best = r
		}
	}
	return best
}

func ruleSelects(r *s3types.ReplicationRule, k string) bool {
	f := r.Filter
	switch {
	case f == nil:
		return strings.HasPrefix(k, aws.ToString(r.Prefix)) //nolint:staticcheck // the V1 schema's Prefix
	case f.Tag != nil:
		return false
	case f.And != nil:
		return len(f.And.Tags) == 0 && strings.HasPrefix(k, aws.ToString(f.And.Prefix))
	default:
		return strings.HasPrefix(k, aws.ToString(f.Prefix))
	}
}

// replicate decides the pending replication of one object version, once:
// a world restored with the replication still pending schedules it again.
func (c *Cloud) replicate(ref objectRef) {
	c.mu.Lock()
	defer c.kickSave()
	defer c.mu.Unlock()
	p, ok := c.pending[ref]
	if !ok {
		return
	}
	delete(c.pending, ref)
	c.gen++
	src, ok := c.buckets[ref.bucket]
	if !ok {
		return
	}
	o := src.version(ref.key, ref.versionID)
	if o == nil {
		return
	}
	replica, reason := c.checkReplicationPermsLocked(src, o, p.role, p.rule)
	if reason == "" && c.takeReplicationFailureLocked(src.owner) {
		reason = "AssumeRoleNotPermitted: role " + p.role + " or its permissions not yet visible to S3 (IAM propagation; injected by FailReplication)"
	}
	if reason != "" {
		o.replication = s3types.ReplicationStatusFailed
		c.failures[ref] = reason
		return
	}
	dst := c.buckets[strings.TrimPrefix(aws.ToString(p.rule.Destination.Bucket), "arn:aws:s3:::")]
	dst.remove(o.key, o.versionID)
	dst.add(replica)
	o.replication = s3types.ReplicationStatusCompleted
	delete(c.failures, ref)
}

// checkReplicationPermsLocked returns the replica to store, or the reason
// replication fails.
func (c *Cloud) checkReplicationPermsLocked(src *bucket, o *object, roleARN string, rule *s3types.ReplicationRule) (*object, string) {
	fail := func(code, format string, args ...any) (*object, string) {
		return nil, code + ": " + fmt.Sprintf(format, args...)
	}
	if src.versioning != s3types.BucketVersioningStatusEnabled {
		return fail("SrcBucketReplicationConfigMissing", "versioning of source bucket %s is %q, not Enabled", src.name, src.versioning)
	}
	m := roleARNRE.FindStringSubmatch(roleARN)
	if m == nil || m[1] != src.owner {
		return fail("AssumeRoleNotPermitted", "role %q is not a role of the source bucket's account %s", roleARN, src.owner)
	}
	r, visible := c.roleVisibleLocked(roleARN)
	switch {
	case r == nil:
		return fail("AssumeRoleNotPermitted", "role %s does not exist", roleARN)
	case !visible:
		return fail("AssumeRoleNotPermitted", "role %s is not yet visible to S3 (IAM propagation)", roleARN)
	}
	trust, err := parsePolicy(r.trust, true)
	if err != nil {
		return fail("AssumeRoleNotPermitted", "trust policy of role %s does not parse", roleARN)
	}
	s3svc := principal{service: "s3.amazonaws.com"}
	assume := request{caller: s3svc, action: "sts:AssumeRole", resource: roleARN, context: map[string]string{
		"aws:sourceaccount": src.owner, "aws:sourcearn": src.arn(),
	}}
	if a := authorize(assume, adminIdentity, &trust, src.owner, keyPolicy, "the trust policy of "+roleARN); !a.ok {
		return fail("AssumeRoleNotPermitted", "%s", a.reason)
	}

	dst, ok := c.buckets[strings.TrimPrefix(aws.ToString(rule.Destination.Bucket), "arn:aws:s3:::")]
	switch {
	case !ok:
		return fail("DstBucketNotFound", "destination bucket %s does not exist", aws.ToString(rule.Destination.Bucket))
	case dst.versioning != s3types.BucketVersioningStatusEnabled:
		return fail("DstBucketUnversioned", "versioning of destination bucket %s is %q, not Enabled", dst.name, dst.versioning)
	case src.objectLock && !dst.objectLock:
		return fail("DstBucketObjectLockConfigMissing", "source bucket %s has Object Lock, destination bucket %s does not", src.name, dst.name)
	}
	if acct := aws.ToString(rule.Destination.Account); acct != "" && acct != dst.owner {
		return fail("DstPutObjectNotPermitted", "the rule names account %s as the destination owner, but bucket %s belongs to %s", acct, dst.name, dst.owner)
	}

	caller := principal{account: src.owner, arn: fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/s3-replication", src.owner, r.name), roleARN: roleARN, userID: r.id + ":s3-replication"}
	id := c.identityLocked(r)

	srcObj := src.arn() + "/" + o.key
	if a := c.s3Authorize(caller, id, src, "s3:GetObjectVersionForReplication", srcObj); !a.ok {
		return fail("SrcGetObjectNotPermitted", "%s", a.reason)
	}
	if src.objectLock {
		if a := c.s3Authorize(caller, id, src, "s3:GetObjectRetention", srcObj); !a.ok {
			return fail("SrcGetRetentionNotPermitted", "%s", a.reason)
		}
		if a := c.s3Authorize(caller, id, src, "s3:GetObjectLegalHold", srcObj); !a.ok {
			return fail("SrcGetLegalHoldNotPermitted", "%s", a.reason)
		}
	}
	if o.kmsKey != "" {
		if reason := c.kmsUse(caller, id, o.kmsKey, src, srcObj, o.bucketKey, "kms:Decrypt", "Src"); reason != "" {
			return nil, reason
		}
	}

	dstObj := dst.arn() + "/" + o.key
	if a := c.s3Authorize(caller, id, dst, "s3:ReplicateObject", dstObj); !a.ok {
		return fail("DstPutObjectNotPermitted", "%s", a.reason)
	}
	if rule.Destination.AccessControlTranslation != nil {
		if a := c.s3Authorize(caller, id, dst, "s3:ObjectOwnerOverrideToBucketOwner", dstObj); !a.ok {
			return fail("DstPutObjectNotPermitted", "%s", a.reason)
		}
	}

	replica := &object{key: o.key, versionID: o.versionID, data: o.data, etag: o.etag, modified: c.now(),
		sse: o.sse, replication: s3types.ReplicationStatusReplica,
		lockMode: o.lockMode, retainUntil: o.retainUntil, legalHold: o.legalHold}
	if replica.lockMode == "" {
		replica.lockMode, replica.retainUntil = dst.defaultRetention(c.now())
	}
	replicaKey, action := "", "kms:Encrypt"
	switch {
	case o.kmsKey != "":
		if ec := rule.Destination.EncryptionConfiguration; ec != nil {
			replicaKey = aws.ToString(ec.ReplicaKmsKeyID)
		}
		replica.bucketKey = o.bucketKey
		if replicaKey == "" {
			return fail("DstPutObjectNotPermitted", "SSE-KMS object %s selected by a rule without ReplicaKmsKeyID", o.key)
		}
	case o.sse == "":
		// Unencrypted: the destination's default encryption applies.
		if k, bk := dst.defaultKMSKey(); k != "" {
			replicaKey, action, replica.bucketKey = k, "kms:GenerateDataKey", bk
		} else if dst.encryption != nil {
			replica.sse = s3types.ServerSideEncryptionAes256
		}
	}
	if replicaKey != "" {
		if reason := c.kmsUse(caller, id, replicaKey, dst, dstObj, replica.bucketKey, action, "Dst"); reason != "" {
			return nil, reason
		}
		replica.sse, replica.kmsKey = s3types.ServerSideEncryptionAwsKms, c.resolveKeyARNLocked(replicaKey, dst)
	}
	return replica, ""
}

// resolveKeyARNLocked turns a key ID or ARN used for bucket b into the
// key's ARN: bare IDs resolve in b's account and region.
func (c *Cloud) resolveKeyARNLocked(id string, b *bucket) string {
	if strings.HasPrefix(id, "arn:") {
		return id
	}
	return "arn:aws:kms:" + b.region + ":" + b.owner + ":key/" + id
}

// kmsUse checks that caller may do action with the key for an S3 object in
// b, as S3 does on its behalf. side is "Src" or "Dst" for the failure code.
func (c *Cloud) kmsUse(caller principal, id identity, keyID string, b *bucket, objARN string, bucketKey bool, action, side string) string {
	arn := c.resolveKeyARNLocked(keyID, b)
	ky, ok := c.keys[arn]
	switch {
	case !ok || ky.region != b.region:
		return fmt.Sprintf("%sKmsKeyNotFound: key %s does not exist in %s, the region of bucket %s", side, keyID, b.region, b.name)
	case !ky.enabled:
		return fmt.Sprintf("%sKmsKeyInvalidState: key %s is disabled", side, arn)
	}
	kp, err := parsePolicy(ky.policy, false)
	if err != nil {
		return fmt.Sprintf("%sKmsKeyInvalidState: the key policy of %s does not parse", side, arn)
	}
	context := objARN
	if bucketKey {
		context = b.arn()
	}
	req := request{caller: caller, action: action, resource: arn, context: map[string]string{
		"kms:viaservice":                   "s3." + b.region + ".amazonaws.com",
		"kms:encryptioncontext:aws:s3:arn": context,
		"kms:calleraccount":                caller.account,
	}}
	if a := authorize(req, id, &kp, ky.account, keyPolicy, "the key policy of "+arn); !a.ok {
		code := "SrcGetObjectNotPermitted"
		if side == "Dst" {
			code = "DstPutObjectNotPermitted"
		}
		return code + ": " + a.reason
	}
	return ""
}
