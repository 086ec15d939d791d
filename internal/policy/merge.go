package policy

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

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

// RulePrefix returns the key prefix a rule's filter selects ("" for the whole bucket, a tag
// filter, or a legacy rule without one), and whether the filter also asks for tags.
func RulePrefix(r ReplicationRule) (prefix string, tagged bool) {
	f := r.Filter
	switch {
	case f == nil:
		if r.Prefix != nil {
			return *r.Prefix, false
		}
		return "", false
	case f.And != nil:
		if f.And.Prefix != nil {
			prefix = *f.And.Prefix
		}
		return prefix, len(f.And.Tags) > 0
	case f.Tag != nil:
		return "", true
	case f.Prefix != nil:
		return *f.Prefix, false
	}
	return "", false
}

// OverlappingRules returns the enabled rules of c that bucketbridge does not own and that select
// some of the keys rule selects: one prefix is a prefix of the other (tags aside, which only
// narrow a rule). rule itself, found by ID, is not among them. A rule merged by
// [MergeReplicationRule] gets the highest priority, and S3 replicates an object that several
// rules to one destination bucket select by the highest-priority rule alone, so bucketbridge's
// rule silently outranks each of these that shares its destination.
// See https://docs.aws.amazon.com/AmazonS3/latest/userguide/replication-add-config.html
// (Priority, and replicating to multiple destination buckets).
func OverlappingRules(c ReplicationConfiguration, rule ReplicationRule) []ReplicationRule {
	ours, _ := RulePrefix(rule)
	var out []ReplicationRule
	for _, r := range c.Rules {
		if r.ID == rule.ID || IsOwnedRuleID(r.ID) || r.Status != "Enabled" {
			continue
		}
		if p, _ := RulePrefix(r); strings.HasPrefix(p, ours) || strings.HasPrefix(ours, p) {
			out = append(out, cloneRule(r))
		}
	}
	return out
}
