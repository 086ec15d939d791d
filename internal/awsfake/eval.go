package awsfake

import (
	"fmt"
	"strings"

	"github.com/bucketbridge/bucketbridge/internal/policy"
)

// This file is a small IAM policy evaluator: Allow and Deny statements with
// "*" and "?" wildcards on actions, resources and principals, NotAction,
// NotResource and NotPrincipal, and the string, ARN and Bool condition
// operators on the keys bucketbridge uses (kms:ViaService,
// kms:EncryptionContext:aws:s3:arn, aws:SourceAccount, aws:SourceArn,
// sts:ExternalId, aws:SecureTransport). It follows "Policy evaluation
// logic" in the IAM User Guide for the cases that matter here: an explicit
// Deny anywhere wins; same-account access needs an Allow in the identity
// OR the resource policy; cross-account access needs both; a KMS key policy
// must always allow, directly or by delegating to the account ("root").

// principal is who makes a request.
type principal struct {
	account string
	// arn is the caller's ARN as GetCallerIdentity reports it.
	arn string
	// roleARN is the role of a role session, "" otherwise.
	roleARN string
	// service is a service principal such as "s3.amazonaws.com", used when
	// evaluating a trust policy for a service.
	service string
	// userID is GetCallerIdentity's UserId.
	userID string
}

// request is one authorization question.
type request struct {
	caller   principal
	action   string
	resource string
	// context holds condition keys, lower case.
	context map[string]string
}

// evalResult is what one document says about a request.
type evalResult struct {
	// denySid is the Sid of a matching Deny ("" with deny unset).
	deny    bool
	denySid string
	// allowDirect: an Allow applies to the caller itself (its ARN, its
	// role, "*", or no Principal element in an identity policy).
	allowDirect bool
	// allowAccount: an Allow applies to the caller's account ("A" or
	// "arn:aws:iam::A:root"), i.e. delegates to the account's IAM.
	allowAccount bool
}

func (r evalResult) allows() bool { return r.allowDirect || r.allowAccount }

// principalMatch says how a Principal element applies to a caller.
type principalMatch int

const (
	matchNone principalMatch = iota
	matchAccount
	matchDirect
)

// evaluate evaluates doc for req. Identity policies have no Principal
// element: every statement applies to the caller.
func evaluate(doc policy.Document, req request, identity bool) evalResult {
	var res evalResult
	for _, st := range doc.Statement {
		m := matchDirect
		if !identity {
			m = statementPrincipal(st, req.caller)
			if m == matchNone {
				continue
			}
		}
		if !actionApplies(st, req.action) || !resourceApplies(st, req.resource) || !conditionsHold(st.Condition, req.context) {
			continue
		}
		switch {
		case strings.EqualFold(st.Effect, "Deny"):
			if !res.deny {
				res.deny, res.denySid = true, st.Sid
			}
		case strings.EqualFold(st.Effect, "Allow") && m == matchDirect:
			res.allowDirect = true
		case strings.EqualFold(st.Effect, "Allow"):
			res.allowAccount = true
		}
	}
	return res
}

func statementPrincipal(st policy.Statement, p principal) principalMatch {
	if st.Principal != nil {
		return matchPrincipal(*st.Principal, p)
	}
	if st.NotPrincipal != nil {
		if matchPrincipal(*st.NotPrincipal, p) == matchNone {
			return matchDirect
		}
		return matchNone
	}
	return matchNone
}

func matchPrincipal(pr policy.Principal, p principal) principalMatch {
	if pr.All {
		return matchDirect
	}
	best := matchNone
	for _, v := range pr.IDs["Service"] {
		if p.service != "" && wildcardMatch(strings.ToLower(v), strings.ToLower(p.service)) {
			return matchDirect
		}
	}
	if p.service != "" {
		return matchNone
	}
	for _, v := range pr.IDs["AWS"] {
		switch {
		case v == "*":
			return matchDirect
		case v == p.account || v == rootARN(p.account):
			best = matchAccount
		case wildcardMatch(v, p.arn) || (p.roleARN != "" && wildcardMatch(v, p.roleARN)):
			return matchDirect
		}
	}
	return best
}

func actionApplies(st policy.Statement, action string) bool {
	action = strings.ToLower(action)
	if len(st.NotAction) > 0 {
		return !anyMatch(st.NotAction, action, true)
	}
	return anyMatch(st.Action, action, true)
}

func resourceApplies(st policy.Statement, resource string) bool {
	switch {
	case len(st.NotResource) > 0:
		return !anyMatch(st.NotResource, resource, false)
	case len(st.Resource) > 0:
		return anyMatch(st.Resource, resource, false)
	default:
		// Trust policies have no Resource: the role itself is the resource.
		return true
	}
}

func anyMatch(patterns policy.Values, s string, fold bool) bool {
	for _, p := range patterns {
		if fold {
			p = strings.ToLower(p)
		}
		if wildcardMatch(p, s) {
			return true
		}
	}
	return false
}

// conditionsHold reports whether every operator and key of c holds in ctx.
// Unknown operators never hold, so an Allow with an unknown condition never
// grants and a Deny with one never denies.
func conditionsHold(c policy.Condition, ctx map[string]string) bool {
	for op, keys := range c {
		for k, want := range keys {
			if !conditionHolds(op, ctx, strings.ToLower(k), want) {
				return false
			}
		}
	}
	return true
}

func conditionHolds(op string, ctx map[string]string, key string, want policy.Values) bool {
	base, ifExists := strings.CutSuffix(op, "IfExists")
	got, ok := ctx[key]
	if !ok {
		if ifExists {
			return true
		}
		// A negated operator holds when the key is absent.
		return strings.Contains(base, "Not")
	}
	var match func(pattern, value string) bool
	negate := false
	switch base {
	case "StringEquals", "ArnEquals", "Bool":
		match = func(p, v string) bool { return p == v }
	case "StringNotEquals", "ArnNotEquals":
		match, negate = func(p, v string) bool { return p == v }, true
	case "StringEqualsIgnoreCase":
		match = strings.EqualFold
	case "StringNotEqualsIgnoreCase":
		match, negate = strings.EqualFold, true
	case "StringLike", "ArnLike":
		match = wildcardMatch
	case "StringNotLike", "ArnNotLike":
		match, negate = wildcardMatch, true
	default:
		return false
	}
	if base == "Bool" {
		got = strings.ToLower(got)
	}
	hit := false
	for _, w := range want {
		if base == "Bool" {
			w = strings.ToLower(w)
		}
		if match(w, got) {
			hit = true
			break
		}
	}
	return hit != negate
}

// wildcardMatch reports whether s matches pattern, where "*" matches any
// run of characters and "?" any one character.
func wildcardMatch(pattern, s string) bool {
	px, sx := 0, 0
	star, mark := -1, 0
	for sx < len(s) {
		switch {
		case px < len(pattern) && (pattern[px] == '?' || pattern[px] == s[sx]):
			px++
			sx++
		case px < len(pattern) && pattern[px] == '*':
			star, mark = px, sx
			px++
		case star >= 0:
			px = star + 1
			mark++
			sx = mark
		default:
			return false
		}
	}
	for px < len(pattern) && pattern[px] == '*' {
		px++
	}
	return px == len(pattern)
}

func rootARN(account string) string { return "arn:aws:iam::" + account + ":root" }

// authorization is the outcome of combining identity and resource
// policies for one request.
type authorization struct {
	ok     bool
	reason string
}

// resourceKind says how a resource policy combines with identity policies.
type resourceKind int

const (
	// bucketPolicy: optional; same account needs identity OR resource.
	bucketPolicy resourceKind = iota
	// keyPolicy: mandatory; the key policy must allow the caller directly,
	// or delegate to its account and the identity policy allow too.
	keyPolicy
)

// identity is what the caller's own policies say.
type identity struct {
	// admin: the caller may do anything its account may. The fake does not
	// model the policies of the service's identity and of the provisioner
	// roles; their accounts' administrators would have granted them.
	admin bool
	// policies are the caller's identity policies: a role's inline policies
	// and the default versions of its attached managed policies.
	policies []policy.Document
	// boundary is the role's permissions boundary, nil when it has none.
	// What the boundary does not allow is denied, whatever else allows it.
	// See https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html
	boundary *policy.Document
}

// adminIdentity is the identity of callers whose policies are not modelled.
var adminIdentity = identity{admin: true}

// authorize decides req against the caller's identity, the resource's
// policy (nil when it has none), the resource's owner account and kind.
// what names the resource policy in the reason ("the key policy of K").
func authorize(req request, id identity, resource *policy.Document, owner string, kind resourceKind, what string) authorization {
	denied := func(format string, args ...any) authorization {
		return authorization{reason: fmt.Sprintf("%s is not allowed %s on %s: ", req.caller.label(), req.action, req.resource) + fmt.Sprintf(format, args...)}
	}
	idAllow := id.admin
	for _, d := range id.policies {
		r := evaluate(d, req, true)
		if r.deny {
			return denied("explicit Deny (Sid %q) in the identity policy", r.denySid)
		}
		idAllow = idAllow || r.allows()
	}
	if id.boundary != nil {
		r := evaluate(*id.boundary, req, true)
		switch {
		case r.deny:
			return denied("explicit Deny (Sid %q) in the permissions boundary", r.denySid)
		case !r.allows():
			// A boundary limits even what a resource policy grants the role.
			return denied("the role's permissions boundary does not allow it")
		}
	}
	var res evalResult
	if resource != nil {
		res = evaluate(*resource, req, false)
		if res.deny {
			return denied("explicit Deny (Sid %q) in %s", res.denySid, what)
		}
	}
	sameAccount := req.caller.account == owner
	switch {
	case kind == keyPolicy && !res.allows():
		return denied("no statement of %s allows it", what)
	case kind == keyPolicy && !res.allowDirect && !idAllow:
		return denied("%s delegates to account %s's IAM policies, and no identity policy allows it", what, req.caller.account)
	case kind == keyPolicy && !sameAccount && !idAllow:
		return denied("no identity policy allows it (cross-account access needs both %s and an identity policy)", what)
	case kind == bucketPolicy && sameAccount && !idAllow && !res.allowDirect:
		return denied("neither an identity policy nor %s allows it", what)
	case kind == bucketPolicy && !sameAccount && !res.allows():
		return denied("no statement of %s allows it (cross-account access needs both)", what)
	case kind == bucketPolicy && !sameAccount && !idAllow:
		return denied("no identity policy allows it (cross-account access needs both %s and an identity policy)", what)
	}
	return authorization{ok: true}
}

// label names the caller in reasons: its role, or its ARN.
func (p principal) label() string {
	switch {
	case p.roleARN != "":
		return "role " + p.roleARN
	case p.service != "":
		return "service " + p.service
	default:
		return p.arn
	}
}
