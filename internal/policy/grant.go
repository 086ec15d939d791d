package policy

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Grant is what bucketbridge grants on one bucket through a bucket or key policy: the
// replication roles of every live request that needs the grant. The provisioner reads it from
// the requests stored in its database, under the lock that guards the document, and
// recomputes bucketbridge's statements from it as a whole; it never adds or removes one role
// at a time on the strength of what AWS answers, because two requests changing the same
// document at once would both read the other's half-done work.
type Grant struct {
	// Bucket is the bucket's name: Y for the destination's documents, X for the source key's.
	Bucket string
	// Region is the bucket's region (its partition and kms:ViaService follow from it).
	Region string
	// Roles are the full ARNs, path included, of the replication roles of every live request
	// that needs the grant, in any order, duplicates allowed. Anything that is not a role ARN
	// is left out of every statement: bucketbridge's statements name roles and nothing else.
	Roles []string
}

// Validate reports a Grant the builders cannot use: no bucket or region, or a role that is
// not a role ARN (a "*", an account, or the AROA… ID of a deleted role).
func (g Grant) Validate() error {
	var bad []string
	if g.Bucket == "" {
		bad = append(bad, "no bucket")
	}
	if g.Region == "" {
		bad = append(bad, "no region")
	}
	for _, r := range g.Roles {
		if _, err := ParseRoleARN(r); err != nil {
			bad = append(bad, fmt.Sprintf("%q is not a role ARN", r))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: grant on bucket %q: %s", ErrInvalidInput, g.Bucket, strings.Join(bad, "; "))
	}
	return nil
}

// roles returns the role ARNs of g sorted, deduplicated, and without anything else.
func (g Grant) roles() []string {
	out := make([]string, 0, len(g.Roles))
	for _, r := range g.Roles {
		if _, err := ParseRoleARN(r); err == nil {
			out = append(out, r)
		}
	}
	return sortedSet(out)
}

func (g Grant) bucketARN() string { return BucketARN(Partition(g.Region), g.Bucket) }

// DestinationBucketPolicySids are the Sids of bucketbridge's statements in a destination
// bucket's policy: [DestinationBucketPolicyStatements] builds them and [SyncBucketPolicy]
// replaces them.
func DestinationBucketPolicySids() []string { return []string{SidReplicaObjects, SidReplicaBucket} }

// DestinationBucketPolicyStatements returns bucketbridge's two statements in Y's bucket policy
// naming every role of g, sorted; none when g has no role. The bucket statement grants
// s3:GetBucketVersioning only: AWS's example also grants s3:PutBucketVersioning, which nothing
// bucketbridge does needs and which an adopted role with broad S3 rights could use to suspend
// versioning on Y.
// See https://docs.aws.amazon.com/AmazonS3/latest/userguide/setting-repl-config-perm-overview.html
// (granting permissions when the source and destination buckets are owned by different accounts).
func DestinationBucketPolicyStatements(g Grant) []Statement {
	roles := g.roles()
	if len(roles) == 0 {
		return nil
	}
	y := g.bucketARN()
	return []Statement{
		{Sid: SidReplicaObjects, Effect: "Allow", Principal: awsPrincipal(roles...),
			Action:   Values{"s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags", "s3:ObjectOwnerOverrideToBucketOwner"},
			Resource: Values{y + "/*"}},
		{Sid: SidReplicaBucket, Effect: "Allow", Principal: awsPrincipal(slices.Clone(roles)...),
			Action: Values{"s3:GetBucketVersioning"}, Resource: Values{y}},
	}
}

// DestinationKeyPolicyStatements returns bucketbridge's statement in KB's key policy for
// bucket Y naming every role of g, sorted; none when g has no role. Its Sid is
// [KeyStatementSid] of [SidReplicaEncrypt] and Y, so that the statements of two buckets
// encrypted by one key never overwrite each other.
func DestinationKeyPolicyStatements(g Grant) []Statement {
	roles := g.roles()
	if len(roles) == 0 {
		return nil
	}
	y := g.bucketARN()
	return []Statement{{
		Sid:       KeyStatementSid(SidReplicaEncrypt, g.Bucket),
		Effect:    "Allow",
		Principal: awsPrincipal(roles...),
		Action:    Values{"kms:Encrypt", "kms:GenerateDataKey", "kms:Decrypt"},
		Resource:  Values{"*"},
		Condition: kmsCondition(g.Region, y, y+"/*"),
	}}
}

// SourceKeyPolicyStatements returns the statement in KA's key policy, for source bucket X,
// naming every role of g; none when g has no role. It is needed only when KA's policy does not
// delegate to A's IAM: without that delegation the role's own kms:Decrypt grant is worthless.
// See https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html#key-policy-default-allow-root-enable-iam
func SourceKeyPolicyStatements(g Grant) []Statement {
	roles := g.roles()
	if len(roles) == 0 {
		return nil
	}
	x := g.bucketARN()
	return []Statement{{
		Sid:       KeyStatementSid(SidReplicaDecrypt, g.Bucket),
		Effect:    "Allow",
		Principal: awsPrincipal(roles...),
		Action:    Values{"kms:Decrypt"},
		Resource:  Values{"*"},
		Condition: kmsCondition(g.Region, x, x+"/*"),
	}}
}

// Why a principal found in one of bucketbridge's statements is not written back.
const (
	// DroppedUniqueID: the unique ID (AROA…, AIDA…) of a deleted role or user. AWS shows it in
	// place of the ARN once the role is gone; it matches no one, and S3 and KMS refuse a policy
	// that holds one.
	DroppedUniqueID = "unique ID of a deleted IAM role or user"
	// DroppedWildcard: "*" or {"AWS": "*"}, everyone. bucketbridge's statements never name it.
	DroppedWildcard = "wildcard principal"
	// DroppedNotLive: a role that no live request needs any more.
	DroppedNotLive = "not the role of a live request"
	// DroppedNotRole: a principal of another kind (an account, a service, a user).
	DroppedNotRole = "not a replication role"
)

// DroppedPrincipal is a principal that was in one of bucketbridge's statements of a document
// and is not in the document [SyncStatements] returns.
type DroppedPrincipal struct {
	// Sid is the statement's Sid.
	Sid string `json:"sid"`
	// Principal is the principal as found: a role ARN, an AROA… ID, "*", or "Service:…" for a
	// principal of a type other than AWS.
	Principal string `json:"principal"`
	// Reason is one of the Dropped… constants.
	Reason string `json:"reason"`
}

// Sync is a bucket or key policy with bucketbridge's statements recomputed.
type Sync struct {
	// Document is the policy to write. Compare it with the current one using [Equal] to decide
	// whether to write at all.
	Document Document
	// Empty is true when Document has no statement left: the bucket policy must be deleted
	// (DeleteBucketPolicy), because S3 rejects a policy without statements.
	Empty bool
	// Dropped lists, in document order, what bucketbridge's statements held before and no
	// longer hold, so that a step can record it.
	Dropped []DroppedPrincipal
}

// ErrForeignInvalidPrincipal is matched by errors.Is for a [*ForeignPrincipalError].
var ErrForeignInvalidPrincipal = errors.New("a statement bucketbridge does not own names a deleted IAM principal")

// InvalidPrincipal locates a principal that AWS will refuse in a statement bucketbridge does
// not own.
type InvalidPrincipal struct {
	// Sid is the statement's Sid, "" when it has none.
	Sid string `json:"sid,omitempty"`
	// Index is the statement's position in the document's Statement list, from 0.
	Index int `json:"index"`
	// Principal is the offending principal, e.g. "AROA27HJSWAHEPTTLIWSO".
	Principal string `json:"principal"`
}

func (p InvalidPrincipal) where() string {
	if p.Sid != "" {
		return fmt.Sprintf("statement %q", p.Sid)
	}
	return fmt.Sprintf("statement #%d (it has no Sid)", p.Index+1)
}

// ForeignPrincipalError reports statements that bucketbridge does not own and that name the
// unique ID of a deleted role or user. S3 ("MalformedPolicy: Invalid principal in policy") and
// KMS ("MalformedPolicyDocumentException: Policy contains a statement with one or more invalid
// principals.") refuse to save any policy that holds one, so no change to the document can
// succeed until its owner removes it; bucketbridge never edits statements it does not own.
type ForeignPrincipalError struct {
	// Found lists every offending principal, in document order.
	Found []InvalidPrincipal
}

// Error implements error, in words a human can act on.
func (e *ForeignPrincipalError) Error() string {
	parts := make([]string, 0, len(e.Found))
	for _, p := range e.Found {
		parts = append(parts, fmt.Sprintf("%s names %s", p.where(), p.Principal))
	}
	return strings.Join(parts, "; ") + ": that is the unique ID of a deleted IAM role or user, which matches no one and which AWS refuses in any policy it is asked to save; " +
		"bucketbridge does not edit statements it does not own, so remove that principal from the statement (or the statement, if nothing else is left in it), then retry"
}

// Is makes errors.Is(err, ErrForeignInvalidPrincipal) true.
func (e *ForeignPrincipalError) Is(target error) bool { return target == ErrForeignInvalidPrincipal }

// SyncStatements returns current with bucketbridge's statements whose Sid is in sids replaced
// by want, matched by Sid and never by principal:
//   - a statement with one of those Sids is replaced, where it stands, by the statement of want
//     with that Sid, or dropped when want has none (its list of roles became empty); a second
//     statement with the same Sid is dropped;
//   - a statement of want whose Sid current lacks is appended;
//   - any other statement whose Sid is bucketbridge's ([IsOwnedSid], e.g. the key statement of
//     another bucket encrypted by the same key) keeps its roles but loses what can never be
//     valid there (wildcards and unique IDs of deleted principals), and goes when nothing is
//     left;
//   - every other statement is kept exactly as it is, in its place. When one of them names the
//     unique ID of a deleted principal, SyncStatements returns a [*ForeignPrincipalError]
//     naming it, because AWS would refuse the document whatever bucketbridge changed.
//
// Every principal that was in a replaced or cleaned statement and is not in the result is
// listed in Sync.Dropped. Every statement of want must carry one of sids. current is not
// modified.
func SyncStatements(current Document, sids []string, want []Statement) (Sync, error) {
	wanted := make(map[string]Statement, len(want))
	for _, w := range want {
		if !slices.Contains(sids, w.Sid) {
			return Sync{}, fmt.Errorf("%w: statement Sid %q is not among those being replaced (%s)", ErrInvalidInput, w.Sid, strings.Join(sids, ", "))
		}
		wanted[w.Sid] = w
	}
	out := clone(current)
	var (
		res     Sync
		foreign []InvalidPrincipal
		placed  = map[string]bool{}
		kept    = make([]Statement, 0, len(out.Statement)+len(want))
	)
	for i, st := range out.Statement {
		switch {
		case slices.Contains(sids, st.Sid):
			w, ok := wanted[st.Sid]
			res.Dropped = append(res.Dropped, droppedFrom(st, w, ok)...)
			if ok && !placed[st.Sid] {
				kept = append(kept, cloneStatement(w))
				placed[st.Sid] = true
			}
		case IsOwnedSid(st.Sid):
			cleaned, dropped := cleanOwned(st)
			res.Dropped = append(res.Dropped, dropped...)
			if cleaned != nil {
				kept = append(kept, *cleaned)
			}
		default:
			for _, p := range []*Principal{st.Principal, st.NotPrincipal} {
				if p == nil || p.All {
					continue
				}
				for _, id := range p.IDs["AWS"] {
					if IsUniqueID(id) {
						foreign = append(foreign, InvalidPrincipal{Sid: st.Sid, Index: i, Principal: id})
					}
				}
			}
			kept = append(kept, st)
		}
	}
	if len(foreign) > 0 {
		return Sync{}, &ForeignPrincipalError{Found: foreign}
	}
	for _, w := range want {
		if !placed[w.Sid] {
			kept = append(kept, cloneStatement(w))
			placed[w.Sid] = true
		}
	}
	out.Statement = kept
	if out.Version == "" && (len(current.Statement) == 0 || len(kept) == 0) {
		out.Version = Version2012
	}
	res.Document = out
	res.Empty = len(kept) == 0
	return res, nil
}

// droppedFrom lists what st names that its replacement w (absent when !ok) does not.
func droppedFrom(st, w Statement, ok bool) []DroppedPrincipal {
	var keep []string
	if ok {
		keep = awsIDs(w.Principal)
	}
	var out []DroppedPrincipal
	for _, p := range []*Principal{st.Principal, st.NotPrincipal} {
		for _, d := range principalsOf(p) {
			switch {
			case d.typ == "AWS" && slices.Contains(keep, d.id) && p == st.Principal:
				continue
			case d.typ == "*" || (d.typ == "AWS" && d.id == "*"):
				out = append(out, DroppedPrincipal{Sid: st.Sid, Principal: "*", Reason: DroppedWildcard})
			case d.typ == "AWS" && IsUniqueID(d.id):
				out = append(out, DroppedPrincipal{Sid: st.Sid, Principal: d.id, Reason: DroppedUniqueID})
			case d.typ == "AWS" && isRoleARN(d.id) && p == st.Principal:
				out = append(out, DroppedPrincipal{Sid: st.Sid, Principal: d.id, Reason: DroppedNotLive})
			default:
				out = append(out, DroppedPrincipal{Sid: st.Sid, Principal: d.label(), Reason: DroppedNotRole})
			}
		}
	}
	return out
}

// cleanOwned drops from a statement of bucketbridge's, recomputed elsewhere, the principals
// that can never be valid in it; nil when no principal is left.
func cleanOwned(st Statement) (*Statement, []DroppedPrincipal) {
	if st.Principal == nil {
		return &st, nil
	}
	if st.Principal.All {
		return nil, []DroppedPrincipal{{Sid: st.Sid, Principal: "*", Reason: DroppedWildcard}}
	}
	var dropped []DroppedPrincipal
	ids := make(map[string]Values, len(st.Principal.IDs))
	for typ, vals := range st.Principal.IDs {
		if typ != "AWS" {
			ids[typ] = vals
			continue
		}
		var left Values
		for _, v := range vals {
			switch {
			case v == "*":
				dropped = append(dropped, DroppedPrincipal{Sid: st.Sid, Principal: "*", Reason: DroppedWildcard})
			case IsUniqueID(v):
				dropped = append(dropped, DroppedPrincipal{Sid: st.Sid, Principal: v, Reason: DroppedUniqueID})
			default:
				left = append(left, v)
			}
		}
		if len(left) > 0 {
			ids[typ] = left
		}
	}
	if len(dropped) == 0 {
		return &st, nil
	}
	if len(ids) == 0 {
		return nil, dropped
	}
	st.Principal = &Principal{IDs: ids}
	return &st, dropped
}

type principalID struct{ typ, id string }

func (p principalID) label() string {
	if p.typ == "AWS" || p.typ == "*" {
		return p.id
	}
	return p.typ + ":" + p.id
}

// principalsOf lists a Principal element's entries, types in sorted order; "*" as a whole is
// {typ: "*", id: "*"}.
func principalsOf(p *Principal) []principalID {
	if p == nil {
		return nil
	}
	if p.All {
		return []principalID{{"*", "*"}}
	}
	types := make([]string, 0, len(p.IDs))
	for t := range p.IDs {
		types = append(types, t)
	}
	sort.Strings(types)
	var out []principalID
	for _, t := range types {
		for _, id := range p.IDs[t] {
			out = append(out, principalID{t, id})
		}
	}
	return out
}

func isRoleARN(s string) bool {
	_, err := ParseRoleARN(s)
	return err == nil
}

// ErrEmptyKeyPolicy is returned when a key policy would be left without any statement: a key
// always has a policy, and one without statements would lock everyone out of the key.
var ErrEmptyKeyPolicy = errors.New("key policy would have no statement left")

// SyncBucketPolicy recomputes bucketbridge's statements in destination bucket Y's policy from
// g (the roles of every live request into Y) and checks S3's size limit. current is the empty
// Document when the bucket has no policy; a result with Empty set means: delete the policy.
func SyncBucketPolicy(current Document, g Grant) (Sync, error) {
	if err := g.Validate(); err != nil {
		return Sync{}, err
	}
	s, err := SyncStatements(current, DestinationBucketPolicySids(), DestinationBucketPolicyStatements(g))
	if err != nil {
		return Sync{}, fmt.Errorf("bucket policy of %s: %w", g.Bucket, err)
	}
	if !s.Empty {
		if err := CheckBucketPolicy(s.Document); err != nil {
			return Sync{}, fmt.Errorf("bucket policy of %s: %w", g.Bucket, err)
		}
	}
	return s, nil
}

// SyncDestinationKeyPolicy recomputes bucketbridge's statement for destination bucket Y in
// KB's key policy from g (the roles of every live request into Y) and checks KMS's size limit.
// Every other statement, above all the one that keeps the key's administrators in control,
// stays as it is.
func SyncDestinationKeyPolicy(current Document, g Grant) (Sync, error) {
	return syncKeyPolicy(current, g, DestinationKeyPolicyStatements(g), KeyStatementSid(SidReplicaEncrypt, g.Bucket))
}

// SyncSourceKeyPolicy recomputes bucketbridge's statement for source bucket X in KA's key
// policy from g (the roles of every live request from X whose key policy does not delegate to
// A's IAM) and checks KMS's size limit.
func SyncSourceKeyPolicy(current Document, g Grant) (Sync, error) {
	return syncKeyPolicy(current, g, SourceKeyPolicyStatements(g), KeyStatementSid(SidReplicaDecrypt, g.Bucket))
}

func syncKeyPolicy(current Document, g Grant, want []Statement, sid string) (Sync, error) {
	if err := g.Validate(); err != nil {
		return Sync{}, err
	}
	s, err := SyncStatements(current, []string{sid}, want)
	if err != nil {
		return Sync{}, fmt.Errorf("key policy statement %s: %w", sid, err)
	}
	if s.Empty {
		return Sync{}, fmt.Errorf("key policy statement %s: %w", sid, ErrEmptyKeyPolicy)
	}
	if err := CheckKeyPolicy(s.Document); err != nil {
		return Sync{}, fmt.Errorf("key policy statement %s: %w", sid, err)
	}
	return s, nil
}
