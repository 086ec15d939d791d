package policy

import (
	"errors"
	"fmt"
	"strings"
)

// Side is one end of a replication: an account's bucket and its customer-managed KMS key.
type Side struct {
	// AccountID is the 12-digit account ID.
	AccountID string
	// Region is the bucket's (and the key's) region.
	Region string
	// Bucket is the bucket name.
	Bucket string
	// KMSKeyARN is the full ARN of the key the bucket's objects are encrypted with.
	KMSKeyARN string
}

// Input is what the builders need from a replication request.
type Input struct {
	// RequestID names the replication rule ("bucketbridge-<request id>").
	RequestID string
	// Source is X in account A, encrypted with KA.
	Source Side
	// Destination is Y in account B, encrypted with KB.
	Destination Side
	// Prefix limits replication to keys starting with it; "" means the whole bucket.
	Prefix string
	// DeleteMarkerReplication replicates delete markers.
	DeleteMarkerReplication bool
	// ReplicaModifications replicates metadata changes made on replicas.
	ReplicaModifications bool
	// StorageClass of the replicas; "" means "STANDARD".
	StorageClass string
	// ReplicationTimeControl enables S3 Replication Time Control and its metrics.
	ReplicationTimeControl bool
	// TrustConditions adds the confused-deputy conditions to the trust policy
	// (BB_TRUST_CONDITIONS).
	TrustConditions bool
	// RoleName is the replication role's name; "" means [RoleName] of the source bucket. Set it
	// when the source bucket's configuration already names a role that bucketbridge adopts.
	RoleName string
	// AdoptedRoleARN is the full ARN, path included, of the role that the source bucket's
	// configuration names and bucketbridge adopts. When set it is ROLE, and RoleName is not
	// used: roles the S3 console creates live under /service-role/, and an ARN built from the
	// name alone would name no role.
	AdoptedRoleARN string
	// SetSourceDefaultEncryption makes the source bucket's default encryption SSE-KMS with KA
	// and S3 Bucket Keys ([SourceDefaultEncryption]).
	SetSourceDefaultEncryption bool
}

// Findings are what the preflight (inspect_source, inspect_destination) found that changes
// the documents. The zero value is the common case, which a dry run assumes: the destination
// bucket's Object Ownership still honours ACLs, and KA's key policy delegates to A's IAM.
type Findings struct {
	// DestinationOwnerEnforced is true when Y's Object Ownership is "bucket owner enforced"
	// (GetBucketOwnershipControls): ACLs are disabled and Y's owner owns every object anyway,
	// so the role policy drops s3:ObjectOwnerOverrideToBucketOwner and the rule drops
	// AccessControlTranslation.
	DestinationOwnerEnforced bool
	// SourceKeyNotDelegated is true when KA's key policy lacks the usual statement giving
	// A's IAM (arn:aws:iam::A:root) kms:*, so the role must be named in KA's key policy.
	SourceKeyNotDelegated bool
	// SourceObjectLock is true when X has Object Lock enabled (GetObjectLockConfiguration):
	// the role then also needs s3:GetObjectRetention and s3:GetObjectLegalHold on X's objects.
	SourceObjectLock bool
}

// NamedPolicy is an inline role policy and its name.
type NamedPolicy struct {
	// Name is the policy name ([RoleInlinePolicyName]).
	Name string `json:"name"`
	// Document is the policy.
	Document Document `json:"document"`
}

// Documents is every document of one request, as the dry run shows it.
type Documents struct {
	// ReplicationRoleARN is ROLE.
	ReplicationRoleARN string `json:"replication_role_arn"`
	// Documents are the documents themselves.
	Documents PlannedDocuments `json:"documents"`
	// Notes say which findings the documents depend on and what is decided only when they
	// are merged.
	Notes []string `json:"notes,omitempty"`
}

// PlannedDocuments are the documents of one request (docs/ARCHITECTURE.md, The documents).
type PlannedDocuments struct {
	// TrustPolicy is the replication role's trust policy.
	TrustPolicy Document `json:"trust_policy"`
	// RolePolicies are the role's permissions as [BuildRolePolicies] packs them for this
	// request alone. The role is shared by every request from the source bucket, and a stored
	// request's role holds the grants of all of them, packed the same way.
	RolePolicies RolePolicies `json:"role_policies"`
	// DestinationKeyPolicyStatement is bucketbridge's statement in KB's key policy.
	DestinationKeyPolicyStatement Statement `json:"destination_key_policy_statement"`
	// DestinationBucketPolicyStatements are bucketbridge's statements in Y's bucket policy.
	DestinationBucketPolicyStatements []Statement `json:"destination_bucket_policy_statements"`
	// SourceKeyPolicyStatement is bucketbridge's statement in KA's key policy; nil when KA
	// delegates to A's IAM.
	SourceKeyPolicyStatement *Statement `json:"source_key_policy_statement,omitempty"`
	// SourceDefaultEncryption is the default encryption set on X when the request asks for it
	// ([Input.SetSourceDefaultEncryption]); nil otherwise.
	SourceDefaultEncryption *BucketEncryption `json:"source_default_encryption,omitempty"`
	// ReplicationRule is merged into X's replication configuration; its Priority is set then.
	ReplicationRule ReplicationRule `json:"replication_rule"`
}

// ErrInvalidInput is matched by errors.Is for an [Input] the builders cannot use.
var ErrInvalidInput = errors.New("invalid policy input")

// Validate checks that the builders have what they need. The API validates requests fully;
// this only guards against documents with empty ARNs.
func (in Input) Validate() error {
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"request id", in.RequestID},
		{"source account", in.Source.AccountID}, {"source region", in.Source.Region},
		{"source bucket", in.Source.Bucket}, {"source key", in.Source.KMSKeyARN},
		{"destination account", in.Destination.AccountID}, {"destination region", in.Destination.Region},
		{"destination bucket", in.Destination.Bucket}, {"destination key", in.Destination.KMSKeyARN},
	} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing %s", ErrInvalidInput, strings.Join(missing, ", "))
	}
	return nil
}

// RoleARN returns ROLE, the replication role's ARN, path included.
func (in Input) RoleARN() string {
	if in.AdoptedRoleARN != "" {
		return in.AdoptedRoleARN
	}
	name := in.RoleName
	if name == "" {
		name = RoleName(in.Source.Bucket)
	}
	return RoleARN(Partition(in.Source.Region), in.Source.AccountID, name)
}

func (in Input) srcARN() string { return BucketARN(Partition(in.Source.Region), in.Source.Bucket) }
func (in Input) dstARN() string {
	return BucketARN(Partition(in.Destination.Region), in.Destination.Bucket)
}

// TrustPolicy returns the replication role's trust policy: AWS's documented replication trust
// policy, plus, when in.TrustConditions is set, the confused-deputy conditions
// (aws:SourceAccount and aws:SourceArn). The role is shared by every request from the source
// bucket, so the conditions name the bucket, not a prefix.
// See https://docs.aws.amazon.com/AmazonS3/latest/userguide/setting-repl-config-perm-overview.html
// and https://docs.aws.amazon.com/IAM/latest/UserGuide/confused-deputy.html
func TrustPolicy(in Input) Document {
	st := Statement{
		Sid:       "S3ReplicationAssume",
		Effect:    "Allow",
		Principal: &Principal{IDs: map[string]Values{"Service": {"s3.amazonaws.com"}}},
		Action:    Values{"sts:AssumeRole"},
	}
	if in.TrustConditions {
		st.Condition = Condition{
			"StringEquals": {"aws:SourceAccount": {in.Source.AccountID}},
			"ArnLike":      {"aws:SourceArn": {in.srcARN()}},
		}
	}
	return Document{Version: Version2012, Statement: []Statement{st}}
}

func kmsCondition(region, bucketARN, objects string) Condition {
	return Condition{
		"StringEquals": {"kms:ViaService": {S3ServiceName(region)}},
		"StringLike":   {"kms:EncryptionContext:aws:s3:arn": {bucketARN, objects}},
	}
}

// ReplicationRuleFor returns the request's replication rule without a Priority, which
// [MergeReplicationRule] sets from the configuration it is merged into.
// See https://docs.aws.amazon.com/AmazonS3/latest/userguide/replication-add-config.html
func ReplicationRuleFor(in Input, f Findings) ReplicationRule {
	status := func(on bool) *StatusOnly {
		if on {
			return &StatusOnly{Status: "Enabled"}
		}
		return &StatusOnly{Status: "Disabled"}
	}
	prefix := in.Prefix
	storage := in.StorageClass
	if storage == "" {
		storage = "STANDARD"
	}
	dst := &Destination{
		Bucket:                  in.dstARN(),
		Account:                 in.Destination.AccountID,
		EncryptionConfiguration: &EncryptionConfiguration{ReplicaKmsKeyID: in.Destination.KMSKeyARN},
		StorageClass:            storage,
	}
	if !f.DestinationOwnerEnforced {
		dst.AccessControlTranslation = &AccessControlTranslation{Owner: "Destination"}
	}
	if in.ReplicationTimeControl {
		// 15 minutes is the only value S3 accepts.
		// See https://docs.aws.amazon.com/AmazonS3/latest/userguide/replication-time-control.html
		fifteen := int32(15)
		dst.ReplicationTime = &ReplicationTime{Status: "Enabled", Time: &ReplicationTimeValue{Minutes: &fifteen}}
		dst.Metrics = &Metrics{Status: "Enabled", EventThreshold: &ReplicationTimeValue{Minutes: &fifteen}}
	}
	return ReplicationRule{
		ID:                      RuleID(in.RequestID),
		Status:                  "Enabled",
		Filter:                  &ReplicationRuleFilter{Prefix: &prefix},
		DeleteMarkerReplication: status(in.DeleteMarkerReplication),
		SourceSelectionCriteria: &SourceSelectionCriteria{
			SseKmsEncryptedObjects: status(true),
			ReplicaModifications:   status(in.ReplicaModifications),
		},
		Destination: dst,
	}
}

// Plan returns every document of a request given the preflight's findings. A dry run, which
// has no findings, passes the zero Findings (the common case) and the Notes say so.
func Plan(in Input, f Findings) (Documents, error) {
	if err := in.Validate(); err != nil {
		return Documents{}, err
	}
	role := in.RoleARN()
	if _, err := ParseRoleARN(role); err != nil {
		return Documents{}, fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	rp, err := BuildRolePolicies(RoleInput{Role: role, Source: in.Source, ObjectLock: f.SourceObjectLock,
		Targets: []RoleTarget{{SourceKMSKeyARN: in.Source.KMSKeyARN, Destination: in.Destination, Prefix: in.Prefix,
			DestinationOwnerEnforced: f.DestinationOwnerEnforced}}})
	if err != nil {
		return Documents{}, err
	}
	dst := Grant{Bucket: in.Destination.Bucket, Region: in.Destination.Region, Roles: []string{role}}
	d := Documents{
		ReplicationRoleARN: role,
		Documents: PlannedDocuments{
			TrustPolicy:                       TrustPolicy(in),
			RolePolicies:                      rp,
			DestinationKeyPolicyStatement:     DestinationKeyPolicyStatements(dst)[0],
			DestinationBucketPolicyStatements: DestinationBucketPolicyStatements(dst),
			ReplicationRule:                   ReplicationRuleFor(in, f),
		},
	}
	if in.SetSourceDefaultEncryption {
		enc := SourceDefaultEncryption(in.Source.KMSKeyARN)
		d.Documents.SourceDefaultEncryption = &enc
		d.Notes = append(d.Notes, "the source bucket's default encryption becomes SSE-KMS with the source key and S3 Bucket Keys, unless it already is; deprovisioning restores what it was")
	} else {
		d.Notes = append(d.Notes, "the source bucket's default encryption is compared with the source key at inspection: objects written without encryption headers under SSE-S3 (or no default) replicate as SSE-S3, which a warning reports, and a default SSE-KMS key other than the source key fails the request")
	}
	d.Notes = append(d.Notes, "the role's policies hold this request's grants; the role is shared by every request from the source bucket, and holds all of their grants, packed into its inline policy and, beyond 10,240 characters, customer-managed policies")
	if f.DestinationOwnerEnforced {
		d.Notes = append(d.Notes, "destination Object Ownership is bucket owner enforced: no owner override, no AccessControlTranslation")
	} else {
		d.Notes = append(d.Notes, "destination Object Ownership taken to allow ACLs (not bucket owner enforced; a dry run assumes this): replicas are handed to the destination owner")
	}
	if f.SourceKeyNotDelegated {
		st := SourceKeyPolicyStatements(Grant{Bucket: in.Source.Bucket, Region: in.Source.Region, Roles: []string{role}})[0]
		d.Documents.SourceKeyPolicyStatement = &st
		d.Notes = append(d.Notes, "the source key's policy does not delegate to the source account's IAM: the role is added to it")
	} else {
		d.Notes = append(d.Notes, "source key policy taken to delegate to the source account's IAM (a dry run assumes this): nothing is added to it")
	}
	if f.SourceObjectLock {
		d.Notes = append(d.Notes, "the source bucket has Object Lock: the role may read retention and legal holds, and the destination bucket needs Object Lock too")
	}
	d.Notes = append(d.Notes, "the rule's Priority is set when it is merged into the source bucket's configuration: highest existing + 1; an enabled rule of someone else's that selects some of the same keys is reported in a warning")
	return d, nil
}

func awsPrincipal(arns ...string) *Principal {
	return &Principal{IDs: map[string]Values{"AWS": Values(arns)}}
}
