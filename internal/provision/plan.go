package provision

import "github.com/bucketbridge/bucketbridge/internal/policy"

// PolicyInput is what internal/policy builds a request's documents from.
// roleName is "" for bucketbridge's own role, or the role being adopted.
func (s Spec) PolicyInput(requestID string, trustConditions bool, roleName string) policy.Input {
	return policy.Input{
		RequestID:                  requestID,
		Source:                     s.Source.policy(),
		Destination:                s.Destination.policy(),
		Prefix:                     s.Rule.Prefix,
		DeleteMarkerReplication:    s.Rule.DeleteMarkerReplication,
		ReplicaModifications:       s.Rule.ReplicaModifications,
		StorageClass:               s.Rule.StorageClass,
		ReplicationTimeControl:     s.Rule.ReplicationTimeControl,
		TrustConditions:            trustConditions,
		RoleName:                   roleName,
		SetSourceDefaultEncryption: s.SetSourceDefaultEncryption,
	}
}

func (s Side) policy() policy.Side {
	return policy.Side{AccountID: s.AccountID, Region: s.Region, Bucket: s.Bucket, KMSKeyARN: s.KMSKeyARN}
}

// DryRunRequestID stands for the id a stored request would get, in the rule
// ID of a dry run's documents.
const DryRunRequestID = "REQUEST-ID"

// DryRun returns the documents a request would apply, assuming what the
// preflight usually finds (the destination honours ACLs; the source key
// delegates to its account's IAM); the result's notes say so.
func DryRun(s Spec, trustConditions bool) (policy.Documents, error) {
	return policy.Plan(s.PolicyInput(DryRunRequestID, trustConditions, ""), policy.Findings{})
}
