package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// RoleInlinePolicyName is the name of the one inline policy bucketbridge writes on a
// replication role; what does not fit in it goes into customer-managed policies named by
// [ManagedPolicyName].
const RoleInlinePolicyName = PolicyNamePrefix + "replication"

// RoleTarget is one live request from a source bucket, as the replication role's permissions
// need it.
type RoleTarget struct {
	// SourceKMSKeyARN is KA, the key the request's source objects are encrypted with.
	SourceKMSKeyARN string
	// Destination is Y in account B, encrypted with KB (Destination.KMSKeyARN).
	Destination Side
	// Prefix is the rule's prefix; "" means the whole bucket.
	Prefix string
	// DestinationOwnerEnforced is true when Y's Object Ownership is "bucket owner enforced":
	// the role then needs no s3:ObjectOwnerOverrideToBucketOwner on Y.
	DestinationOwnerEnforced bool
}

// RoleInput is what the replication role's permissions are built from: the source bucket and
// every live request from it. A bucket's replication configuration names one role, so every
// request from one source bucket shares it; the provisioner reads the requests from its
// database under the role's lock and rebuilds the role's documents from all of them.
type RoleInput struct {
	// Role is the role's full ARN, path included. Managed policy names and ARNs derive from it.
	Role string
	// Source is X: its account, region and name (its KMSKeyARN is not used: each target names
	// the key its objects are encrypted with).
	Source Side
	// ObjectLock is true when X has Object Lock enabled: the role then also needs
	// s3:GetObjectRetention and s3:GetObjectLegalHold on the objects it replicates.
	// See https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock-managing.html#object-lock-managing-replication
	ObjectLock bool
	// Targets are the live requests from X, in any order.
	Targets []RoleTarget
	// OtherInlineChars is the size, as IAM counts it ([PolicyChars]), of the role's inline
	// policies that bucketbridge does not own (an adopted role's own); they share the role's
	// 10,240-character budget.
	OtherInlineChars int
	// OtherManagedPolicies is the number of managed policies attached to the role that
	// bucketbridge does not own; they share the role's quota of attached policies.
	OtherManagedPolicies int
}

// ManagedPolicy is a customer-managed policy bucketbridge creates and attaches to a role.
type ManagedPolicy struct {
	// Name is the policy's name ([ManagedPolicyName]); its path is "/".
	Name string `json:"name"`
	// ARN is the policy's ARN, as AttachRolePolicy wants it.
	ARN string `json:"arn"`
	// Document is the policy's default version.
	Document Document `json:"document"`
}

// RolePolicies are every permission document bucketbridge keeps on a replication role.
//
// A step converges the role on them: it writes every listed policy in the order
// [RoleWriteOrder] gives (an inline one with PutRolePolicy; a managed one with CreatePolicy,
// or CreatePolicyVersion as the default version after deleting the oldest non-default one when
// five exist, and AttachRolePolicy), then deletes the inline policies and detaches and deletes
// the managed policies whose names bucketbridge owns ([IsOwnedPolicyName]) and that are not
// listed. That order keeps every prefix granted throughout, wherever the packing moved its
// grants. Policies of the old scheme (one inline policy per destination and prefix) are among
// those deleted last; when they leave too little of the inline budget, the new inline policy
// cannot be written before they go, so count them in OtherInlineChars for that one run.
type RolePolicies struct {
	// Inline are the role's inline policies (at most one, [RoleInlinePolicyName]).
	Inline []NamedPolicy `json:"inline"`
	// Managed are the customer-managed policies to attach, in name order.
	Managed []ManagedPolicy `json:"managed,omitempty"`
}

// ManagedPolicyName returns the name of the n-th (from 1) customer-managed policy of the role
// named roleName. Managed policy names are unique in an account, as role names are, so the
// name carries the role's.
func ManagedPolicyName(roleName string, n int) string {
	return PolicyNamePrefix + "for-" + roleName + "-" + strconv.Itoa(n)
}

// ManagedPolicyARN returns the ARN of a customer-managed policy with path "/".
func ManagedPolicyARN(partition, accountID, name string) string {
	return "arn:" + orAWS(partition) + ":iam::" + accountID + ":policy/" + name
}

// IsOwnedPolicyName reports whether an inline or managed policy with this name is
// bucketbridge's.
func IsOwnedPolicyName(name string) bool { return strings.HasPrefix(name, PolicyNamePrefix) }

func sourceObjectActions(objectLock bool) Values {
	a := Values{"s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"}
	if objectLock {
		a = append(a, "s3:GetObjectRetention", "s3:GetObjectLegalHold")
	}
	return a
}

func destinationObjectActions(ownerEnforced bool) Values {
	a := Values{"s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"}
	if !ownerEnforced {
		a = append(a, "s3:ObjectOwnerOverrideToBucketOwner")
	}
	return a
}

// Validate reports a RoleInput the builder cannot use.
func (in RoleInput) Validate() error {
	var bad []string
	if _, err := ParseRoleARN(in.Role); err != nil {
		bad = append(bad, err.Error())
	}
	if in.Source.AccountID == "" || in.Source.Region == "" || in.Source.Bucket == "" {
		bad = append(bad, "source account, region or bucket missing")
	}
	for i, t := range in.Targets {
		if t.SourceKMSKeyARN == "" || t.Destination.Bucket == "" || t.Destination.Region == "" || t.Destination.KMSKeyARN == "" {
			bad = append(bad, fmt.Sprintf("target %d: source key, destination bucket, region or key missing", i))
		}
	}
	if in.OtherInlineChars < 0 || in.OtherManagedPolicies < 0 {
		bad = append(bad, "negative budget")
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: role documents: %s", ErrInvalidInput, strings.Join(bad, "; "))
	}
	return nil
}

// BuildRolePolicies returns the replication role's permission documents for every live
// request from the source bucket.
//
// Each request keeps least privilege, its prefix's objects only: s3 object actions on
// arn:aws:s3:::X/P* and arn:aws:s3:::Y/P*, kms:Decrypt with KA and kms:Encrypt,
// kms:GenerateDataKey and kms:Decrypt with KB, conditioned on kms:ViaService and on the
// encryption context being the bucket ARN (S3 Bucket Keys) or the prefix's object ARNs. The
// requests are written as few statements as possible: one statement per kind of access lists
// every prefix's resources, sorted by destination and prefix, and one KMS statement per key
// lists every encryption context of that key's requests (never a key with another key's
// prefixes). Owner override on Y is granted only for destinations that honour ACLs.
//
// The statements fill the role's inline budget first (10,240 characters in all, less
// OtherInlineChars) and spill into customer-managed policies of 6,144 characters each, as many
// as the role's quota of attached policies allows (10, less OtherManagedPolicies). A long
// statement is split across documents, which IAM unites. With 63-character bucket names that
// holds more than 100 prefixes of 64 characters into one destination, or 20 destinations with
// a few prefixes each. Sizes are counted as IAM counts them ([PolicyChars]); beyond the quotas
// the result is a [*LimitError]. The output depends only on the set of requests, so comparing
// it with what is on the role decides whether to write.
// See https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html
// and https://docs.aws.amazon.com/AmazonS3/latest/userguide/replication-config-for-kms-objects.html
func BuildRolePolicies(in RoleInput) (RolePolicies, error) {
	if err := in.Validate(); err != nil {
		return RolePolicies{}, err
	}
	role, _ := ParseRoleARN(in.Role)
	b := roleBuilder{in: in, src: BucketARN(Partition(in.Source.Region), in.Source.Bucket)}
	entries := b.entries()
	out := RolePolicies{Inline: []NamedPolicy{}}
	if len(entries) == 0 {
		return out, nil
	}
	common := true // the statement on X itself goes into the first document
	if n := b.fit(entries, common, MaxRoleInlinePolicyChars-in.OtherInlineChars); n > 0 {
		out.Inline = append(out.Inline, NamedPolicy{Name: RoleInlinePolicyName, Document: b.document(entries[:n], common)})
		entries, common = entries[n:], false
	}
	maxManaged := MaxManagedPoliciesPerRole - in.OtherManagedPolicies
	for len(entries) > 0 {
		n := b.fit(entries, common, MaxManagedPolicyChars)
		if n == 0 {
			return RolePolicies{}, fmt.Errorf("role %s: %w", role.Name,
				&LimitError{Limit: "managed policy size", Unit: "characters", Size: PolicyChars(b.document(entries[:1], common)), Max: MaxManagedPolicyChars})
		}
		if len(out.Managed) >= maxManaged {
			need := len(out.Managed) + b.count(entries, common) + in.OtherManagedPolicies
			return RolePolicies{}, fmt.Errorf("role %s, with %d managed policies that are not bucketbridge's: %w", role.Name, in.OtherManagedPolicies,
				&LimitError{Limit: "managed policies attached to one role", Unit: "policies", Size: need, Max: MaxManagedPoliciesPerRole})
		}
		name := ManagedPolicyName(role.Name, len(out.Managed)+1)
		out.Managed = append(out.Managed, ManagedPolicy{Name: name, ARN: ManagedPolicyARN(role.Partition, role.AccountID, name), Document: b.document(entries[:n], common)})
		entries, common = entries[n:], false
	}
	return out, nil
}

// Kinds of grant, in the order the documents list them.
const (
	grantSourceObjects = iota
	grantDestinationObjects
	grantDestinationObjectsOwnerEnforced
	grantDecrypt
	grantEncrypt
)

// roleEntry is one resource (or, for KMS, one encryption context) of one kind of grant.
type roleEntry struct {
	kind   int
	key    string // KMS key ARN (grantDecrypt, grantEncrypt)
	region string // the key's region, for kms:ViaService
	value  string // the resource, or the encryption context
}

func compareEntries(a, b roleEntry) int {
	return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.key, b.key), cmp.Compare(a.region, b.region), cmp.Compare(a.value, b.value))
}

type roleBuilder struct {
	in  RoleInput
	src string // X's ARN
}

// entries lists every grant of every target, sorted and without duplicates.
func (b roleBuilder) entries() []roleEntry {
	var out []roleEntry
	for _, t := range b.in.Targets {
		dst := BucketARN(Partition(t.Destination.Region), t.Destination.Bucket)
		srcObjects, dstObjects := b.src+"/"+t.Prefix+"*", dst+"/"+t.Prefix+"*"
		kind := grantDestinationObjects
		if t.DestinationOwnerEnforced {
			kind = grantDestinationObjectsOwnerEnforced
		}
		out = append(out,
			roleEntry{kind: grantSourceObjects, value: srcObjects},
			roleEntry{kind: kind, value: dstObjects},
			roleEntry{kind: grantDecrypt, key: t.SourceKMSKeyARN, region: b.in.Source.Region, value: b.src},
			roleEntry{kind: grantDecrypt, key: t.SourceKMSKeyARN, region: b.in.Source.Region, value: srcObjects},
			roleEntry{kind: grantEncrypt, key: t.Destination.KMSKeyARN, region: t.Destination.Region, value: dst},
			roleEntry{kind: grantEncrypt, key: t.Destination.KMSKeyARN, region: t.Destination.Region, value: dstObjects},
		)
	}
	slices.SortFunc(out, compareEntries)
	return slices.Compact(out)
}

// fit returns how many of entries, from the first, fit in one document of at most max
// characters. A document only grows as entries are added, so a binary search finds it.
func (b roleBuilder) fit(entries []roleEntry, common bool, max int) int {
	// Every entry takes at least its quoted value and a comma (the first no
	// comma): no more than hi entries can fit, which keeps the documents
	// tried small.
	hi, size := 0, -1
	for hi < len(entries) && size <= max {
		size += len(entries[hi].value) + 3
		hi++
	}
	if PolicyChars(b.document(entries[:hi], common)) <= max {
		return hi // the usual case: every entry left fits
	}
	lo := 0 // fits(lo) holds and fits(hi+1) does not; find the largest
	hi--
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if PolicyChars(b.document(entries[:mid], common)) <= max {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// count returns how many managed policies entries would take with no quota.
func (b roleBuilder) count(entries []roleEntry, common bool) int {
	n := 0
	for len(entries) > 0 {
		k := max(b.fit(entries, common, MaxManagedPolicyChars), 1)
		entries, common, n = entries[k:], false, n+1
	}
	return n
}

// document writes entries (sorted) as statements, one per kind and key, after the statement
// on X itself when common is set.
func (b roleBuilder) document(entries []roleEntry, common bool) Document {
	var stmts []Statement
	if common {
		stmts = append(stmts, Statement{Sid: "SourceBucket", Effect: "Allow",
			Action: Values{"s3:ListBucket", "s3:GetReplicationConfiguration"}, Resource: Values{b.src}})
	}
	seen := map[int]int{} // statements of each kind so far, for their Sids
	for i := 0; i < len(entries); {
		e := entries[i]
		j := i
		var values Values
		for ; j < len(entries) && entries[j].kind == e.kind && entries[j].key == e.key && entries[j].region == e.region; j++ {
			values = append(values, entries[j].value)
		}
		n := seen[e.kind]
		seen[e.kind]++
		switch e.kind {
		case grantSourceObjects:
			stmts = append(stmts, Statement{Sid: "SourceObjects", Effect: "Allow", Action: sourceObjectActions(b.in.ObjectLock), Resource: values})
		case grantDestinationObjects:
			stmts = append(stmts, Statement{Sid: "DestinationObjects", Effect: "Allow", Action: destinationObjectActions(false), Resource: values})
		case grantDestinationObjectsOwnerEnforced:
			stmts = append(stmts, Statement{Sid: "DestinationObjectsOwnerEnforced", Effect: "Allow", Action: destinationObjectActions(true), Resource: values})
		case grantDecrypt:
			stmts = append(stmts, Statement{Sid: numberedSid("DecryptSource", n), Effect: "Allow", Action: Values{"kms:Decrypt"}, Resource: Values{e.key},
				Condition: kmsContextCondition(e.region, values)})
		case grantEncrypt:
			stmts = append(stmts, Statement{Sid: numberedSid("EncryptDestination", n), Effect: "Allow",
				Action: Values{"kms:Encrypt", "kms:GenerateDataKey", "kms:Decrypt"}, Resource: Values{e.key},
				Condition: kmsContextCondition(e.region, values)})
		}
		i = j
	}
	return Document{Version: Version2012, Statement: stmts}
}

// numberedSid returns base for the first statement of a kind and base2, base3… for the
// others (IAM Sids allow letters and digits only).
func numberedSid(base string, i int) string {
	if i == 0 {
		return base
	}
	return base + strconv.Itoa(i+1)
}

func kmsContextCondition(region string, contexts Values) Condition {
	return Condition{
		"StringEquals": {"kms:ViaService": {S3ServiceName(region)}},
		"StringLike":   {"kms:EncryptionContext:aws:s3:arn": contexts},
	}
}

// RoleWriteOrder returns the names of the policies of want, inline and managed, in the order
// to write them so that no permission that both current and want grant is missing in between:
// when packing moved a grant from one document to another, its new document is written before
// its old one is overwritten. current maps the names of bucketbridge's policies now on the
// role (inline and managed, [IsOwnedPolicyName]) to their documents. Policies of current that
// want lacks are not listed: remove them once every listed one is written. Should two
// documents trade grants both ways (which needs two changes at once), the one whose name sorts
// first is written first, and a grant may be missing for the moment between the two writes.
func RoleWriteOrder(current map[string]Document, want RolePolicies) []string {
	next := map[string]map[string]bool{}
	var names []string
	for _, p := range want.Inline {
		next[p.Name], names = grantsOf(p.Document), append(names, p.Name)
	}
	for _, p := range want.Managed {
		next[p.Name], names = grantsOf(p.Document), append(names, p.Name)
	}
	slices.Sort(names)
	before := map[string][]string{} // name → names that must be written first
	for _, n := range names {
		cur, ok := current[n]
		if !ok {
			continue
		}
		for g := range grantsOf(cur) {
			if next[n][g] {
				continue
			}
			for _, m := range names {
				if m != n && next[m][g] && !slices.Contains(before[n], m) {
					before[n] = append(before[n], m)
				}
			}
		}
	}
	order := make([]string, 0, len(names))
	done := map[string]bool{}
	for len(order) < len(names) {
		pick := ""
		for _, n := range names { // the first ready one; the first left, when they wait on each other
			if done[n] {
				continue
			}
			if pick == "" {
				pick = n
			}
			if !slices.ContainsFunc(before[n], func(m string) bool { return !done[m] }) {
				pick = n
				break
			}
		}
		done[pick] = true
		order = append(order, pick)
	}
	return order
}

// grantsOf lists what a document allows, one string per action set, resource and (for KMS)
// encryption context, so that grants can be followed from one document to another.
func grantsOf(d Document) map[string]bool {
	out := map[string]bool{}
	for _, st := range d.Statement {
		if st.Effect != "Allow" {
			continue
		}
		actions := strings.Join(normSet(st.Action, true), ",")
		var contexts []string
		other := Condition{}
		for op, keys := range st.Condition {
			for k, v := range keys {
				if op == "StringLike" && k == "kms:EncryptionContext:aws:s3:arn" {
					contexts = append(contexts, v...)
					continue
				}
				if other[op] == nil {
					other[op] = map[string]Values{}
				}
				other[op][k] = v
			}
		}
		if len(contexts) == 0 {
			contexts = []string{""}
		}
		cond := canonicalStatement(Statement{Condition: other})
		for _, r := range st.Resource {
			for _, c := range contexts {
				out[actions+"|"+r+"|"+c+"|"+cond] = true
			}
		}
	}
	return out
}
