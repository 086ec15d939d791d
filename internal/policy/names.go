package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Prefixes that mark what bucketbridge owns. Ours are found by these names, never by
// principal: AWS rewrites a deleted role's ARN in a principal to its unique ID (AROA…).
const (
	// OwnedSidPrefix starts the Sid of every statement bucketbridge owns. IAM Sids allow only
	// [A-Za-z0-9], hence no dash.
	// See https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_sid.html
	OwnedSidPrefix = "Bucketbridge"
	// OwnedRuleIDPrefix starts the ID of every replication rule bucketbridge owns.
	OwnedRuleIDPrefix = "bucketbridge-"
	// RoleNamePrefix starts the name of every replication role bucketbridge creates.
	RoleNamePrefix = "bucketbridge-"
	// PolicyNamePrefix starts the name of every inline role policy bucketbridge writes.
	PolicyNamePrefix = "bucketbridge-"
)

// Sids of the statements bucketbridge owns (DESIGN §10).
const (
	// SidReplicaObjects is the destination bucket-policy statement on Y's objects.
	SidReplicaObjects = "BucketbridgeReplicaObjects"
	// SidReplicaBucket is the destination bucket-policy statement on Y itself.
	SidReplicaBucket = "BucketbridgeReplicaBucket"
	// SidReplicaEncrypt starts the Sid of the statement in KB's key policy; see [KeyStatementSid].
	SidReplicaEncrypt = "BucketbridgeReplicaEncrypt"
	// SidReplicaDecrypt starts the Sid of the statement in KA's key policy; see [KeyStatementSid].
	SidReplicaDecrypt = "BucketbridgeReplicaDecrypt"
)

// IsOwnedSid reports whether a statement with this Sid belongs to bucketbridge.
func IsOwnedSid(sid string) bool { return strings.HasPrefix(sid, OwnedSidPrefix) }

// IsOwnedRuleID reports whether a replication rule with this ID belongs to bucketbridge.
func IsOwnedRuleID(id string) bool { return strings.HasPrefix(id, OwnedRuleIDPrefix) }

// RuleID returns the ID of the replication rule of a request.
func RuleID(requestID string) string { return OwnedRuleIDPrefix + requestID }

// KeyStatementSid returns the Sid of bucketbridge's statement in a key policy for one bucket:
// base ([SidReplicaEncrypt] or [SidReplicaDecrypt]) followed by the bucket name's letters and
// digits and a short hash of the full name. A key may encrypt several buckets, and each
// statement's encryption-context condition names one bucket, so one Sid per (key, bucket)
// keeps one bucket's merge from rewriting another's condition.
func KeyStatementSid(base, bucket string) string {
	var b strings.Builder
	b.WriteString(base)
	upper := true
	for _, r := range bucket {
		switch {
		case r >= 'a' && r <= 'z':
			if upper {
				r -= 'a' - 'A'
			}
			b.WriteRune(r)
			upper = false
		case r >= 'A' && r <= 'Z' || r >= '0' && r <= '9':
			b.WriteRune(r)
			upper = false
		default:
			upper = true
		}
	}
	b.WriteString(strings.ToUpper(shortHash(bucket)))
	return b.String()
}

// RoleName returns the replication role's name for a source bucket: "bucketbridge-<bucket>",
// or, when that would exceed IAM's 64 characters or the bucket holds a character IAM does not
// allow in a role name ([\w+=,.@-]), a prefix of it followed by "-" and a stable 8-character
// hash of the bucket name, so that distinct buckets never share a name.
func RoleName(sourceBucket string) string {
	name := RoleNamePrefix + sourceBucket
	clean := sanitizeIAMName(name)
	if clean == name && len(name) <= MaxRoleNameLen {
		return name
	}
	suffix := "-" + shortHash(sourceBucket)
	keep := min(len(clean), MaxRoleNameLen-len(suffix))
	return strings.TrimRight(clean[:keep], "-.") + suffix
}

// RoleARN returns the ARN of an IAM role in an account; partition is "aws" when empty.
func RoleARN(partition, accountID, roleName string) string {
	return "arn:" + orAWS(partition) + ":iam::" + accountID + ":role/" + roleName
}

// BucketARN returns the ARN of an S3 bucket; partition is "aws" when empty.
func BucketARN(partition, bucket string) string {
	return "arn:" + orAWS(partition) + ":s3:::" + bucket
}

// Partition returns the AWS partition of a region: "aws-cn" for China, "aws-us-gov" for
// GovCloud, "aws" otherwise.
// See https://docs.aws.amazon.com/whitepapers/latest/aws-fault-isolation-boundaries/partitions.html
func Partition(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	default:
		return "aws"
	}
}

// S3ServiceName returns the S3 endpoint name that kms:ViaService sees for a region.
// See https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-via-service
func S3ServiceName(region string) string {
	if Partition(region) == "aws-cn" {
		return "s3." + region + ".amazonaws.com.cn"
	}
	return "s3." + region + ".amazonaws.com"
}

func orAWS(p string) string {
	if p == "" {
		return "aws"
	}
	return p
}

// sanitizeIAMName replaces characters IAM does not allow in role and policy names.
// See https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html (RoleName pattern [\w+=,.@-]+).
func sanitizeIAMName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		case strings.ContainsRune("_+=,.@-", r):
			return r
		default:
			return '-'
		}
	}, s)
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}
