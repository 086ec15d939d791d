package policy

import (
	"errors"
	"fmt"
	"maps"
	"slices"
)

// MergeStatements returns doc with bucketbridge's statements merged in, by Sid: a statement of
// doc with the same Sid as one of ours is replaced, in place, by ours with an AWS principal
// list that unites both (sorted, deduplicated); one of ours that doc lacks is appended. Every
// other statement is kept as it was, in its order. Merging is idempotent and the order in
// which roles are merged does not matter. doc is not modified.
//
// A statement of doc with our Sid is ours whatever it says: anything but its AWS principals
// (a "*" or a service principal someone added by hand) is replaced by ours.
//
// Deprecated: uniting with what AWS holds keeps the unique IDs of deleted roles, which S3 and
// KMS then refuse. Use [SyncStatements] with statements built from every live request.
func MergeStatements(doc Document, ours ...Statement) Document {
	out := clone(doc)
	if len(out.Statement) == 0 && out.Version == "" {
		out.Version = Version2012
	}
	for _, want := range ours {
		principals := awsIDs(want.Principal)
		at := -1
		kept := out.Statement[:0:0]
		for _, st := range out.Statement {
			if st.Sid != want.Sid {
				kept = append(kept, st)
				continue
			}
			principals = append(principals, awsIDs(st.Principal)...)
			if at < 0 {
				at = len(kept)
				kept = append(kept, Statement{}) // filled below
			}
		}
		merged := cloneStatement(want)
		merged.Principal = awsPrincipal(sortedSet(principals)...)
		if at < 0 {
			kept = append(kept, merged)
		} else {
			kept[at] = merged
		}
		out.Statement = kept
	}
	return out
}

// RemovePrincipal returns doc with role taken out of the AWS principals of the statements
// whose Sid is one of sids; a statement left without any principal is dropped. Statements are
// found by Sid, never by principal. doc is not modified.
//
// Deprecated: deciding from AWS whether a role is still needed races with concurrent
// removals. Use [SyncStatements] with statements built from every live request.
func RemovePrincipal(doc Document, role string, sids ...string) Document {
	out := clone(doc)
	kept := out.Statement[:0:0]
	for _, st := range out.Statement {
		if !slices.Contains(sids, st.Sid) || st.Principal == nil || st.Principal.All {
			kept = append(kept, st)
			continue
		}
		ids := maps.Clone(st.Principal.IDs)
		if aws, ok := ids["AWS"]; ok {
			left := slices.DeleteFunc(slices.Clone(aws), func(s string) bool { return s == role })
			if len(left) == 0 {
				delete(ids, "AWS")
			} else {
				ids["AWS"] = left
			}
		}
		if len(ids) == 0 {
			continue
		}
		st.Principal = &Principal{IDs: ids}
		kept = append(kept, st)
	}
	out.Statement = kept
	return out
}

// MergeBucketPolicy merges bucketbridge's statements into a bucket policy (an empty Document
// when the bucket has none) and checks S3's size limit before anything is written.
//
// Deprecated: use [SyncBucketPolicy].
func MergeBucketPolicy(doc Document, ours ...Statement) (Document, error) {
	out := MergeStatements(doc, ours...)
	if err := CheckBucketPolicy(out); err != nil {
		return Document{}, err
	}
	return out, nil
}

// RemoveFromBucketPolicy takes role out of bucketbridge's statements in a bucket policy.
// When no statement is left, deletePolicy is true: the caller must call DeleteBucketPolicy,
// because S3 rejects a policy without statements.
//
// Deprecated: use [SyncBucketPolicy].
func RemoveFromBucketPolicy(doc Document, role string, sids ...string) (out Document, deletePolicy bool) {
	out = RemovePrincipal(doc, role, sids...)
	return out, len(out.Statement) == 0
}

// MergeKeyPolicy merges bucketbridge's statement into a key policy and checks KMS's size
// limit before anything is written. Every other statement (above all the one that keeps the
// key's administrators in control) stays as it was.
//
// Deprecated: use [SyncDestinationKeyPolicy] or [SyncSourceKeyPolicy].
func MergeKeyPolicy(doc Document, ours ...Statement) (Document, error) {
	out := MergeStatements(doc, ours...)
	if err := CheckKeyPolicy(out); err != nil {
		return Document{}, err
	}
	return out, nil
}

// RemoveFromKeyPolicy takes role out of bucketbridge's statements in a key policy. A key
// always has a policy, so there is nothing to delete.
//
// Deprecated: use [SyncDestinationKeyPolicy] or [SyncSourceKeyPolicy].
func RemoveFromKeyPolicy(doc Document, role string, sids ...string) Document {
	return RemovePrincipal(doc, role, sids...)
}

// PutRolePolicy returns the role's inline policies (name → document, as ListRolePolicies and
// GetRolePolicy found them) with p added or replaced, after checking IAM's limit on their
// total size. policies is not modified.
//
// Deprecated: use [BuildRolePolicies], which packs every request's grants into the role's
// inline and managed policies.
func PutRolePolicy(policies map[string]Document, p NamedPolicy) (map[string]Document, error) {
	out := maps.Clone(policies)
	if out == nil {
		out = map[string]Document{}
	}
	out[p.Name] = p.Document
	if err := CheckRolePolicies(out); err != nil {
		return nil, err
	}
	return out, nil
}

// RoleConflictError says that the source bucket's replication configuration already names
// another role: S3 allows one role per configuration, so the request must adopt that role
// (give it the inline policy and use it in the documents) and merge again.
type RoleConflictError struct {
	// Existing is the role ARN the configuration names; adopt it.
	Existing string
	// Wanted is the role ARN the merge was asked to use.
	Wanted string
}

// Error implements error.
func (e *RoleConflictError) Error() string {
	return fmt.Sprintf("replication configuration uses role %s, not %s: adopt %s", e.Existing, e.Wanted, e.Existing)
}

// ErrLegacyReplicationSchema is returned when the configuration holds a rule in S3's first
// schema (a rule-level Prefix and no Filter): S3 rejects a configuration that mixes it with
// the current schema, and rewriting someone else's rule is not ours to do.
// See https://docs.aws.amazon.com/AmazonS3/latest/userguide/replication-add-config.html#replication-backward-compat-considerations
var ErrLegacyReplicationSchema = errors.New("replication configuration uses the legacy rule schema (Prefix without Filter)")

// MergeReplicationRule returns the source bucket's replication configuration with rule added,
// or replaced when a rule with its ID exists (keeping that rule's priority and position, so
// merging twice equals merging once). A new rule gets the highest existing priority + 1.
// Every other rule is kept untouched. current is nil when the bucket has no configuration.
// role is ROLE; a configuration naming another role yields a [*RoleConflictError].
func MergeReplicationRule(current *ReplicationConfiguration, role string, rule ReplicationRule) (ReplicationConfiguration, error) {
	var out ReplicationConfiguration
	if current != nil {
		out = cloneConfig(*current)
	}
	if out.Role != "" && out.Role != role && len(out.Rules) > 0 {
		return ReplicationConfiguration{}, &RoleConflictError{Existing: out.Role, Wanted: role}
	}
	out.Role = role
	var highest int32
	at := -1
	for i, r := range out.Rules {
		if r.ID == rule.ID {
			at = i
			continue
		}
		if r.Filter == nil {
			return ReplicationConfiguration{}, fmt.Errorf("merge rule %s: rule %q: %w", rule.ID, r.ID, ErrLegacyReplicationSchema)
		}
		if r.Priority != nil && *r.Priority > highest {
			highest = *r.Priority
		}
	}
	rule = cloneRule(rule)
	switch {
	case at >= 0 && out.Rules[at].Priority != nil:
		p := *out.Rules[at].Priority
		rule.Priority = &p
		out.Rules[at] = rule
	case at >= 0:
		p := highest + 1
		rule.Priority = &p
		out.Rules[at] = rule
	default:
		p := highest + 1
		rule.Priority = &p
		out.Rules = append(out.Rules, rule)
	}
	if err := CheckReplication(out); err != nil {
		return ReplicationConfiguration{}, err
	}
	return out, nil
}

// RemoveReplicationRule returns the configuration without the rule whose ID is ruleID; every
// other rule is kept untouched. When no rule is left, deleteConfig is true: the caller must
// call DeleteBucketReplication, because S3 rejects a configuration without rules.
func RemoveReplicationRule(current ReplicationConfiguration, ruleID string) (out ReplicationConfiguration, deleteConfig bool) {
	out = cloneConfig(current)
	out.Rules = slices.DeleteFunc(out.Rules, func(r ReplicationRule) bool { return r.ID == ruleID })
	return out, len(out.Rules) == 0
}

func awsIDs(p *Principal) []string {
	if p == nil || p.All {
		return nil
	}
	return slices.Clone(p.IDs["AWS"])
}

func sortedSet(v []string) []string {
	out := slices.Clone(v)
	slices.Sort(out)
	return slices.Compact(out)
}

// clone deep-copies what merge and remove change, so callers' documents never alias results.
func clone(d Document) Document {
	out := d
	out.Statement = make([]Statement, len(d.Statement))
	for i, s := range d.Statement {
		out.Statement[i] = cloneStatement(s)
	}
	out.extra = maps.Clone(d.extra)
	return out
}

func cloneStatement(s Statement) Statement {
	out := s
	out.Principal = clonePrincipal(s.Principal)
	out.NotPrincipal = clonePrincipal(s.NotPrincipal)
	out.Action, out.NotAction = slices.Clone(s.Action), slices.Clone(s.NotAction)
	out.Resource, out.NotResource = slices.Clone(s.Resource), slices.Clone(s.NotResource)
	if s.Condition != nil {
		out.Condition = make(Condition, len(s.Condition))
		for op, keys := range s.Condition {
			m := make(map[string]Values, len(keys))
			for k, v := range keys {
				m[k] = slices.Clone(v)
			}
			out.Condition[op] = m
		}
	}
	out.extra = maps.Clone(s.extra)
	return out
}

func clonePrincipal(p *Principal) *Principal {
	if p == nil {
		return nil
	}
	out := &Principal{All: p.All}
	if p.IDs != nil {
		out.IDs = make(map[string]Values, len(p.IDs))
		for k, v := range p.IDs {
			out.IDs[k] = slices.Clone(v)
		}
	}
	return out
}

// cloneConfig and cloneRule deep-copy, so results never share pointers with their inputs.
// (Not through JSON: that would turn invalid UTF-8 in an ID into U+FFFD and lose the rule.)
func cloneConfig(c ReplicationConfiguration) ReplicationConfiguration {
	out := c
	out.extra = maps.Clone(c.extra)
	out.Rules = make([]ReplicationRule, len(c.Rules))
	for i, r := range c.Rules {
		out.Rules[i] = cloneRule(r)
	}
	return out
}

func cloneRule(r ReplicationRule) ReplicationRule {
	out := r
	out.Priority = ptr(r.Priority)
	out.Prefix = ptr(r.Prefix)
	out.DeleteMarkerReplication = ptr(r.DeleteMarkerReplication)
	out.ExistingObjectReplication = ptr(r.ExistingObjectReplication)
	if f := r.Filter; f != nil {
		out.Filter = &ReplicationRuleFilter{Prefix: ptr(f.Prefix), Tag: cloneTag(f.Tag)}
		if f.And != nil {
			out.Filter.And = &ReplicationRuleAndOperator{Prefix: ptr(f.And.Prefix)}
			if f.And.Tags != nil {
				out.Filter.And.Tags = make([]Tag, len(f.And.Tags))
				for i := range f.And.Tags {
					out.Filter.And.Tags[i] = *cloneTag(&f.And.Tags[i])
				}
			}
		}
	}
	if s := r.SourceSelectionCriteria; s != nil {
		out.SourceSelectionCriteria = &SourceSelectionCriteria{
			SseKmsEncryptedObjects: ptr(s.SseKmsEncryptedObjects),
			ReplicaModifications:   ptr(s.ReplicaModifications),
		}
	}
	if d := r.Destination; d != nil {
		dst := *d
		dst.AccessControlTranslation = ptr(d.AccessControlTranslation)
		dst.EncryptionConfiguration = ptr(d.EncryptionConfiguration)
		if d.ReplicationTime != nil {
			dst.ReplicationTime = &ReplicationTime{Status: d.ReplicationTime.Status, Time: cloneTime(d.ReplicationTime.Time)}
		}
		if d.Metrics != nil {
			dst.Metrics = &Metrics{Status: d.Metrics.Status, EventThreshold: cloneTime(d.Metrics.EventThreshold)}
		}
		out.Destination = &dst
	}
	out.extra = maps.Clone(r.extra)
	return out
}

func cloneTag(t *Tag) *Tag {
	if t == nil {
		return nil
	}
	return &Tag{Key: ptr(t.Key), Value: ptr(t.Value)}
}

func cloneTime(t *ReplicationTimeValue) *ReplicationTimeValue {
	if t == nil {
		return nil
	}
	return &ReplicationTimeValue{Minutes: ptr(t.Minutes)}
}

// ptr returns a copy of *p, or nil.
func ptr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
