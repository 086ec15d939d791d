package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
)

// ReplicationConfiguration mirrors S3's replication configuration. Its JSON field names are
// exactly those of aws-sdk-go-v2's s3types.ReplicationConfiguration (and its parts), so the
// provisioner converts between the two with encoding/json. Unknown keys are kept.
// See https://docs.aws.amazon.com/AmazonS3/latest/API/API_ReplicationConfiguration.html
type ReplicationConfiguration struct {
	// Role is the ARN of the one IAM role S3 assumes for every rule of the configuration.
	Role string `json:"Role,omitempty"`
	// Rules are the configuration's rules, at most [MaxReplicationRules].
	Rules []ReplicationRule `json:"Rules"`

	extra map[string]json.RawMessage
}

// ReplicationRule mirrors s3types.ReplicationRule. Unknown keys are kept.
type ReplicationRule struct {
	// ID identifies the rule; bucketbridge's start with [OwnedRuleIDPrefix].
	ID string `json:"ID,omitempty"`
	// Priority orders overlapping rules; the highest wins.
	Priority *int32 `json:"Priority,omitempty"`
	// Status is "Enabled" or "Disabled".
	Status string `json:"Status,omitempty"`
	// Prefix is the legacy (V1 schema) rule-level prefix, used instead of Filter.
	Prefix *string `json:"Prefix,omitempty"`
	// Filter selects the objects the rule applies to (V2 schema).
	Filter *ReplicationRuleFilter `json:"Filter,omitempty"`
	// DeleteMarkerReplication says whether delete markers are replicated.
	DeleteMarkerReplication *StatusOnly `json:"DeleteMarkerReplication,omitempty"`
	// SourceSelectionCriteria selects SSE-KMS objects and replica modifications.
	SourceSelectionCriteria *SourceSelectionCriteria `json:"SourceSelectionCriteria,omitempty"`
	// ExistingObjectReplication is granted by AWS support only; kept as found.
	ExistingObjectReplication *StatusOnly `json:"ExistingObjectReplication,omitempty"`
	// Destination says where and how replicas are written.
	Destination *Destination `json:"Destination,omitempty"`

	extra map[string]json.RawMessage
}

// ReplicationRuleFilter mirrors s3types.ReplicationRuleFilter: one of Prefix, Tag or And.
type ReplicationRuleFilter struct {
	// Prefix selects keys starting with it; "" selects the whole bucket.
	Prefix *string `json:"Prefix,omitempty"`
	// Tag selects objects carrying it.
	Tag *Tag `json:"Tag,omitempty"`
	// And combines a prefix and tags.
	And *ReplicationRuleAndOperator `json:"And,omitempty"`
}

// ReplicationRuleAndOperator mirrors s3types.ReplicationRuleAndOperator.
type ReplicationRuleAndOperator struct {
	// Prefix selects keys starting with it.
	Prefix *string `json:"Prefix,omitempty"`
	// Tags must all be on the object.
	Tags []Tag `json:"Tags,omitempty"`
}

// Tag mirrors s3types.Tag.
type Tag struct {
	// Key is the tag's key.
	Key *string `json:"Key,omitempty"`
	// Value is the tag's value.
	Value *string `json:"Value,omitempty"`
}

// StatusOnly mirrors the S3 types that hold nothing but a Status ("Enabled" or "Disabled"):
// DeleteMarkerReplication, ExistingObjectReplication, SseKmsEncryptedObjects,
// ReplicaModifications.
type StatusOnly struct {
	// Status is "Enabled" or "Disabled".
	Status string `json:"Status,omitempty"`
}

// SourceSelectionCriteria mirrors s3types.SourceSelectionCriteria.
type SourceSelectionCriteria struct {
	// SseKmsEncryptedObjects must be enabled to replicate SSE-KMS objects.
	SseKmsEncryptedObjects *StatusOnly `json:"SseKmsEncryptedObjects,omitempty"`
	// ReplicaModifications replicates metadata changes made on replicas back.
	ReplicaModifications *StatusOnly `json:"ReplicaModifications,omitempty"`
}

// Destination mirrors s3types.Destination.
type Destination struct {
	// Bucket is the destination bucket's ARN.
	Bucket string `json:"Bucket,omitempty"`
	// Account is the destination bucket owner's account ID.
	Account string `json:"Account,omitempty"`
	// AccessControlTranslation makes the destination account own the replicas.
	AccessControlTranslation *AccessControlTranslation `json:"AccessControlTranslation,omitempty"`
	// EncryptionConfiguration names the KMS key replicas are encrypted with.
	EncryptionConfiguration *EncryptionConfiguration `json:"EncryptionConfiguration,omitempty"`
	// StorageClass of the replicas, e.g. "STANDARD".
	StorageClass string `json:"StorageClass,omitempty"`
	// ReplicationTime enables S3 Replication Time Control.
	ReplicationTime *ReplicationTime `json:"ReplicationTime,omitempty"`
	// Metrics enables replication metrics.
	Metrics *Metrics `json:"Metrics,omitempty"`
}

// AccessControlTranslation mirrors s3types.AccessControlTranslation.
type AccessControlTranslation struct {
	// Owner is "Destination".
	Owner string `json:"Owner,omitempty"`
}

// EncryptionConfiguration mirrors s3types.EncryptionConfiguration.
type EncryptionConfiguration struct {
	// ReplicaKmsKeyID is the full ARN of the destination key.
	ReplicaKmsKeyID string `json:"ReplicaKmsKeyID,omitempty"`
}

// ReplicationTime mirrors s3types.ReplicationTime.
type ReplicationTime struct {
	// Status is "Enabled" or "Disabled".
	Status string `json:"Status,omitempty"`
	// Time is the replication time threshold (15 minutes is the only value S3 accepts).
	Time *ReplicationTimeValue `json:"Time,omitempty"`
}

// Metrics mirrors s3types.Metrics.
type Metrics struct {
	// Status is "Enabled" or "Disabled".
	Status string `json:"Status,omitempty"`
	// EventThreshold is the threshold for replication events.
	EventThreshold *ReplicationTimeValue `json:"EventThreshold,omitempty"`
}

// ReplicationTimeValue mirrors s3types.ReplicationTimeValue.
type ReplicationTimeValue struct {
	// Minutes of the threshold.
	Minutes *int32 `json:"Minutes,omitempty"`
}

var (
	configKeys = []string{"Role", "Rules"}
	ruleKeys   = []string{"ID", "Priority", "Status", "Prefix", "Filter", "DeleteMarkerReplication",
		"SourceSelectionCriteria", "ExistingObjectReplication", "Destination"}
)

// UnmarshalJSON decodes the configuration, keeping unknown keys.
func (c *ReplicationConfiguration) UnmarshalJSON(data []byte) error {
	type plain ReplicationConfiguration
	var p plain
	extra, err := splitKnown(data, configKeys, &p)
	if err != nil {
		return fmt.Errorf("parse replication configuration: %w", err)
	}
	p.extra = extra
	*c = ReplicationConfiguration(p)
	return nil
}

// MarshalJSON encodes the configuration with its unknown keys.
func (c ReplicationConfiguration) MarshalJSON() ([]byte, error) {
	type plain ReplicationConfiguration
	p := plain(c)
	if p.Rules == nil {
		p.Rules = []ReplicationRule{}
	}
	return joinExtra(p, c.extra)
}

// UnmarshalJSON decodes the rule, keeping unknown keys.
func (r *ReplicationRule) UnmarshalJSON(data []byte) error {
	type plain ReplicationRule
	var p plain
	extra, err := splitKnown(data, ruleKeys, &p)
	if err != nil {
		return fmt.Errorf("parse replication rule: %w", err)
	}
	p.extra = extra
	*r = ReplicationRule(p)
	return nil
}

// MarshalJSON encodes the rule with its unknown keys.
func (r ReplicationRule) MarshalJSON() ([]byte, error) {
	type plain ReplicationRule
	return joinExtra(plain(r), r.extra)
}

// splitKnown decodes the keys named in known (matched exactly, not case-insensitively as
// encoding/json would) into v and returns the others.
func splitKnown(data []byte, known []string, v any) (map[string]json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, err
	}
	if obj == nil { // JSON null
		return nil, nil
	}
	var extra map[string]json.RawMessage
	for k, raw := range obj {
		if !slices.Contains(known, k) {
			if extra == nil {
				extra = map[string]json.RawMessage{}
			}
			extra[k] = compact(raw)
			delete(obj, k)
		}
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return nil, err
	}
	return extra, nil
}

// joinExtra encodes v (a struct) and appends the extra keys in sorted order.
func joinExtra(v any, extra map[string]json.RawMessage) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil || len(extra) == 0 {
		return b, err
	}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var buf bytes.Buffer
	buf.Write(b[:len(b)-1]) // without the closing brace
	for _, k := range keys {
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		buf.Write(kb)
		buf.WriteByte(':')
		buf.Write(extra[k])
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// ParseReplicationConfiguration decodes a replication configuration in the JSON shape of
// s3types.ReplicationConfiguration (or of the AWS CLI, which is the same).
func ParseReplicationConfiguration(data []byte) (ReplicationConfiguration, error) {
	var c ReplicationConfiguration
	if err := json.Unmarshal(data, &c); err != nil {
		return ReplicationConfiguration{}, err
	}
	return c, nil
}

// ReplicationEqual reports whether two configurations are the same: same role and the same
// rules, compared by their JSON, in any order (S3 orders rules by Priority, not position).
func ReplicationEqual(a, b ReplicationConfiguration) bool {
	if a.Role != b.Role || !extrasEqual(a.extra, b.extra) {
		return false
	}
	return slices.Equal(ruleSet(a.Rules), ruleSet(b.Rules))
}

func ruleSet(rules []ReplicationRule) []string {
	out := make([]string, 0, len(rules))
	for _, r := range rules {
		b, err := json.Marshal(r)
		if err != nil {
			out = append(out, fmt.Sprint(err))
			continue
		}
		out = append(out, canonJSON(b))
	}
	slices.Sort(out)
	return out
}
