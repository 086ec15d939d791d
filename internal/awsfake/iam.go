package awsfake

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/bucketbridge/bucketbridge/internal/policy"
)

// IAM limits, from the IAM User Guide, "IAM and AWS STS quotas".
const (
	// maxTrustPolicySize is the default role trust policy length quota.
	maxTrustPolicySize = 2048
	// maxRoleInlinePolicySize bounds all inline policies of a role
	// together; IAM does not count white space.
	maxRoleInlinePolicySize = 10240
)

var (
	iamNameRE = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)
	// policyNameRE: inline policy names may be up to 128 characters.
	policyNameRE = regexp.MustCompile(`^[\w+=,.@-]{1,128}$`)
	// iamPathRE is IAM's path pattern (CreateRole, Path): "/" or "/" printable ASCII "/".
	iamPathRE = regexp.MustCompile(`^(/|/[\x21-\x7E]{1,510}/)$`)
)

// role is an IAM role.
type role struct {
	name, arn, path, description string
	// id is the role's unique ID (AROA…), which AWS shows in place of its ARN in every
	// policy once the role is deleted.
	id      string
	trust   string
	created time.Time
	// visibleAt is when S3 and KMS start seeing the role (RoleInvisibleFor).
	visibleAt  time.Time
	tags       []iamtypes.Tag
	inline     map[string]string
	maxSession int32
	// managed lists the ARNs of the attached managed policies, in the order attached.
	managed []string
	// boundary is the ARN of the permissions boundary, "" for none.
	boundary string
}

func (r *role) sdk() *iamtypes.Role {
	var boundary *iamtypes.AttachedPermissionsBoundary
	if r.boundary != "" {
		boundary = &iamtypes.AttachedPermissionsBoundary{PermissionsBoundaryArn: aws.String(r.boundary), PermissionsBoundaryType: iamtypes.PermissionsBoundaryAttachmentTypePolicy}
	}
	return &iamtypes.Role{
		PermissionsBoundary:      boundary,
		RoleName:                 aws.String(r.name),
		Arn:                      aws.String(r.arn),
		RoleId:                   aws.String(r.id),
		Path:                     aws.String(r.path),
		CreateDate:               aws.Time(r.created),
		AssumeRolePolicyDocument: aws.String(encodeIAM(r.trust)),
		Description:              optString(r.description),
		MaxSessionDuration:       aws.Int32(r.maxSession),
		Tags:                     slices.Clone(r.tags),
	}
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}

// IAM is an IAM client acting in one account, with the methods of
// *iam.Client that bucketbridge uses.
type IAM struct {
	c      *Cloud
	caller principal
}

// IAM returns an IAM client acting as the service's identity in account.
func (c *Cloud) IAM(account string) *IAM { return &IAM{c: c, caller: serviceIdentity(account)} }

func noSuchRole(name string) error {
	return typed(http.StatusNotFound, &iamtypes.NoSuchEntityException{Message: aws.String("The role with name " + name + " cannot be found.")})
}

func malformedIAM(msg string) error {
	return typed(http.StatusBadRequest, &iamtypes.MalformedPolicyDocumentException{Message: aws.String(msg)})
}

func invalidInput(msg string) error {
	return typed(http.StatusBadRequest, &iamtypes.InvalidInputException{Message: aws.String(msg)})
}

func (m *IAM) roleLocked(name *string) (*role, error) {
	n := aws.ToString(name)
	if !iamNameRE.MatchString(n) {
		return nil, invalidInput("1 validation error detected: Value '" + n + "' at 'roleName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+")
	}
	r, ok := m.c.accountLocked(m.caller.account).roles[n]
	if !ok {
		return nil, noSuchRole(n)
	}
	return r, nil
}

// checkTrustLocked validates a trust policy as IAM does: syntax, size and
// principals that exist.
func (c *Cloud) checkTrustLocked(doc string) error {
	if len(doc) > maxTrustPolicySize {
		return typed(http.StatusConflict, &iamtypes.LimitExceededException{Message: aws.String("Cannot exceed quota for ACLSizePerRole: 2048")})
	}
	d, err := parsePolicy(doc, true)
	if err != nil {
		return malformedIAM(err.Error())
	}
	if bad := c.invalidPrincipalLocked(d, false); bad != "" {
		return malformedIAM("Invalid principal in policy: " + bad)
	}
	return nil
}

// CreateRole creates a role, at a path ("/" by default, part of its ARN) and
// with a permissions boundary (PermissionsBoundary, a managed policy of the
// account) when given. The role is visible to IAM at once, and to S3 and KMS
// after the account's RoleInvisibleFor delay.
func (m *IAM) CreateRole(ctx context.Context, in *iam.CreateRoleInput, _ ...func(*iam.Options)) (*iam.CreateRoleOutput, error) {
	return do(ctx, m.c, m.caller, svcIAM, "CreateRole", func() (*iam.CreateRoleOutput, error) {
		name := aws.ToString(in.RoleName)
		if !iamNameRE.MatchString(name) {
			return nil, invalidInput("1 validation error detected: Value '" + name + "' at 'roleName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+")
		}
		path := cmp.Or(aws.ToString(in.Path), "/")
		if !iamPathRE.MatchString(path) {
			return nil, invalidInput("1 validation error detected: Value '" + path + "' at 'path' failed to satisfy constraint: Member must satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007E]+\\u002F)")
		}
		acct := m.c.accountLocked(m.caller.account)
		if _, ok := acct.roles[name]; ok {
			return nil, typed(http.StatusConflict, &iamtypes.EntityAlreadyExistsException{Message: aws.String("Role with name " + name + " already exists.")})
		}
		if err := m.c.checkTrustLocked(aws.ToString(in.AssumeRolePolicyDocument)); err != nil {
			return nil, err
		}
		boundary := aws.ToString(in.PermissionsBoundary)
		if boundary != "" {
			if _, ok := acct.policies[boundary]; !ok {
				return nil, notAttachable(boundary)
			}
		}
		r := m.c.newRoleLocked(m.caller.account, name, path, aws.ToString(in.AssumeRolePolicyDocument))
		r.boundary = boundary
		r.description = aws.ToString(in.Description)
		r.tags = slices.Clone(in.Tags)
		if in.MaxSessionDuration != nil {
			r.maxSession = *in.MaxSessionDuration
		}
		return &iam.CreateRoleOutput{Role: r.sdk()}, nil
	})
}

// newRoleLocked stores a new role; the caller has validated it.
func (c *Cloud) newRoleLocked(account, name, path, trust string) *role {
	now := c.now()
	visible := now
	if f, ok := c.faults[account]; ok {
		visible = now.Add(f.roleInvisible)
	}
	r := &role{
		name: name, arn: "arn:aws:iam::" + account + ":role" + path + name, id: c.uniqueIDLocked("AROA", account, name, now),
		path: path, trust: trust, created: now, visibleAt: visible, inline: map[string]string{}, maxSession: 3600,
	}
	c.accountLocked(account).roles[name] = r
	return r
}

// uniqueIDLocked derives the unique ID of an IAM entity from its creation:
// stable for the entity's life, different for an entity of the same name
// created again, as IAM's are. prefix is AROA for roles, ANPA for managed
// policies.
// See https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-unique-ids
func (c *Cloud) uniqueIDLocked(prefix, account, name string, created time.Time) string {
	c.idSeq++
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s|%s|%s|%d|%d", prefix, account, name, created.UnixNano(), c.idSeq)))
	return prefix + base32.StdEncoding.EncodeToString(sum[:])[:17]
}

// roleByARNLocked returns the role that arn names, path included, or nil.
func (c *Cloud) roleByARNLocked(arn string) *role {
	m := roleARNRE.FindStringSubmatch(arn)
	if m == nil {
		return nil
	}
	a, ok := c.accounts[m[1]]
	if !ok {
		return nil
	}
	r, ok := a.roles[m[2]]
	if !ok || r.arn != arn {
		return nil
	}
	return r
}

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

func (c *Cloud) randomIDLocked(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = idAlphabet[c.rng.IntN(len(idAlphabet))]
	}
	return string(b)
}

// GetRole returns a role; its trust policy is URL-encoded, as IAM returns it.
func (m *IAM) GetRole(ctx context.Context, in *iam.GetRoleInput, _ ...func(*iam.Options)) (*iam.GetRoleOutput, error) {
	return do(ctx, m.c, m.caller, svcIAM, "GetRole", func() (*iam.GetRoleOutput, error) {
		r, err := m.roleLocked(in.RoleName)
		if err != nil {
			return nil, err
		}
		return &iam.GetRoleOutput{Role: r.sdk()}, nil
	})
}

// UpdateAssumeRolePolicy replaces a role's trust policy.
func (m *IAM) UpdateAssumeRolePolicy(ctx context.Context, in *iam.UpdateAssumeRolePolicyInput, _ ...func(*iam.Options)) (*iam.UpdateAssumeRolePolicyOutput, error) {
	return do(ctx, m.c, m.caller, svcIAM, "UpdateAssumeRolePolicy", func() (*iam.UpdateAssumeRolePolicyOutput, error) {
		r, err := m.roleLocked(in.RoleName)
		if err != nil {
			return nil, err
		}
		if err := m.c.checkTrustLocked(aws.ToString(in.PolicyDocument)); err != nil {
			return nil, err
		}
		r.trust = aws.ToString(in.PolicyDocument)
		return &iam.UpdateAssumeRolePolicyOutput{}, nil
	})
}

// TagRole adds or overwrites tags of a role.
func (m *IAM) TagRole(ctx context.Context, in *iam.TagRoleInput, _ ...func(*iam.Options)) (*iam.TagRoleOutput, error) {
	return do(ctx, m.c, m.caller, svcIAM, "TagRole", func() (*iam.TagRoleOutput, error) {
		r, err := m.roleLocked(in.RoleName)
		if err != nil {
			return nil, err
		}
		for _, t := range in.Tags {
			i := slices.IndexFunc(r.tags, func(x iamtypes.Tag) bool { return aws.ToString(x.Key) == aws.ToString(t.Key) })
			if i >= 0 {
				r.tags[i] = t
			} else {
				r.tags = append(r.tags, t)
			}
		}
		if len(r.tags) > 50 {
			return nil, typed(http.StatusConflict, &iamtypes.LimitExceededException{Message: aws.String("Cannot exceed quota for TagsPerRole: 50")})
		}
		return &iam.TagRoleOutput{}, nil
	})
}

// PutRolePolicy adds or replaces an inline policy of a role.
func (m *IAM) PutRolePolicy(ctx context.Context, in *iam.PutRolePolicyInput, _ ...func(*iam.Options)) (*iam.PutRolePolicyOutput, error) {
	return do(ctx, m.c, m.caller, svcIAM, "PutRolePolicy", func() (*iam.PutRolePolicyOutput, error) {
		r, err := m.roleLocked(in.RoleName)
		if err != nil {
			return nil, err
		}
		name := aws.ToString(in.PolicyName)
		if !policyNameRE.MatchString(name) {
			return nil, invalidInput("1 validation error detected: Value '" + name + "' at 'policyName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+")
		}
		doc := aws.ToString(in.PolicyDocument)
		d, err := parsePolicy(doc, false)
		if err != nil {
			return nil, malformedIAM(err.Error())
		}
		for _, st := range d.Statement {
			if st.Principal != nil || st.NotPrincipal != nil {
				return nil, malformedIAM("Policy document should not specify a principal.")
			}
		}
		size := nonSpaceLen(doc)
		for n, p := range r.inline {
			if n != name {
				size += nonSpaceLen(p)
			}
		}
		if size > maxRoleInlinePolicySize {
			// IAM's answer, word for word.
			return nil, typed(http.StatusConflict, &iamtypes.LimitExceededException{Message: aws.String("Maximum policy size of 10240 bytes exceeded for role " + r.name)})
		}
		r.inline[name] = doc
		return &iam.PutRolePolicyOutput{}, nil
	})
}

func nonSpaceLen(s string) int {
	n := 0
	for _, r := range s {
		if !unicode.IsSpace(r) {
			n++
		}
	}
	return n
}

// GetRolePolicy returns an inline policy, URL-encoded as IAM returns it.
func (m *IAM) GetRolePolicy(ctx context.Context, in *iam.GetRolePolicyInput, _ ...func(*iam.Options)) (*iam.GetRolePolicyOutput, error) {
	return do(ctx, m.c, m.caller, svcIAM, "GetRolePolicy", func() (*iam.GetRolePolicyOutput, error) {
		r, err := m.roleLocked(in.RoleName)
		if err != nil {
			return nil, err
		}
		doc, ok := r.inline[aws.ToString(in.PolicyName)]
		if !ok {
			return nil, typed(http.StatusNotFound, &iamtypes.NoSuchEntityException{Message: aws.String("The role policy with name " + aws.ToString(in.PolicyName) + " cannot be found.")})
		}
		return &iam.GetRolePolicyOutput{RoleName: aws.String(r.name), PolicyName: aws.String(aws.ToString(in.PolicyName)), PolicyDocument: aws.String(encodeIAM(doc))}, nil
	})
}

// ListRolePolicies lists the names of a role's inline policies in
// alphabetical order, paginated by Marker and MaxItems (default 100).
func (m *IAM) ListRolePolicies(ctx context.Context, in *iam.ListRolePoliciesInput, _ ...func(*iam.Options)) (*iam.ListRolePoliciesOutput, error) {
	return do(ctx, m.c, m.caller, svcIAM, "ListRolePolicies", func() (*iam.ListRolePoliciesOutput, error) {
		r, err := m.roleLocked(in.RoleName)
		if err != nil {
			return nil, err
		}
		names := make([]string, 0, len(r.inline))
		for n := range r.inline {
			names = append(names, n)
		}
		sort.Strings(names)
		if mk := aws.ToString(in.Marker); mk != "" {
			i := sort.SearchStrings(names, mk)
			names = names[i:]
		}
		max := int(aws.ToInt32(in.MaxItems))
		if max <= 0 {
			max = 100
		}
		out := &iam.ListRolePoliciesOutput{PolicyNames: names}
		if len(names) > max {
			out.PolicyNames, out.IsTruncated, out.Marker = names[:max], true, aws.String(names[max])
		}
		return out, nil
	})
}

// DeleteRolePolicy deletes an inline policy.
func (m *IAM) DeleteRolePolicy(ctx context.Context, in *iam.DeleteRolePolicyInput, _ ...func(*iam.Options)) (*iam.DeleteRolePolicyOutput, error) {
	return do(ctx, m.c, m.caller, svcIAM, "DeleteRolePolicy", func() (*iam.DeleteRolePolicyOutput, error) {
		r, err := m.roleLocked(in.RoleName)
		if err != nil {
			return nil, err
		}
		name := aws.ToString(in.PolicyName)
		if _, ok := r.inline[name]; !ok {
			return nil, typed(http.StatusNotFound, &iamtypes.NoSuchEntityException{Message: aws.String("The role policy with name " + name + " cannot be found.")})
		}
		delete(r.inline, name)
		return &iam.DeleteRolePolicyOutput{}, nil
	})
}

// DeleteRole deletes a role that has no managed policy attached and no
// inline policy left (DeleteConflict otherwise, with IAM's messages). As on
// AWS, every bucket policy, key policy and trust policy (of every account)
// that names the role as a principal then shows the role's unique ID in
// place of its ARN: the ID matches no one, not even a role created again
// with the same name, and S3 and KMS refuse a policy put that holds it.
// See https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html#principal-roles
func (m *IAM) DeleteRole(ctx context.Context, in *iam.DeleteRoleInput, _ ...func(*iam.Options)) (*iam.DeleteRoleOutput, error) {
	return do(ctx, m.c, m.caller, svcIAM, "DeleteRole", func() (*iam.DeleteRoleOutput, error) {
		r, err := m.roleLocked(in.RoleName)
		if err != nil {
			return nil, err
		}
		if len(r.managed) > 0 {
			return nil, typed(http.StatusConflict, &iamtypes.DeleteConflictException{Message: aws.String("Cannot delete entity, must detach all policies first.")})
		}
		if len(r.inline) > 0 {
			return nil, typed(http.StatusConflict, &iamtypes.DeleteConflictException{Message: aws.String("Cannot delete entity, must delete policies first.")})
		}
		delete(m.c.accountLocked(m.caller.account).roles, r.name)
		m.c.forgetPrincipalLocked(r.arn, r.id)
		return &iam.DeleteRoleOutput{}, nil
	})
}

// forgetPrincipalLocked replaces arn by id wherever a stored bucket, key or
// trust policy names it as a principal (Principal or NotPrincipal, type
// AWS). Conditions and resources that mention the ARN are left as they are,
// as AWS leaves them.
func (c *Cloud) forgetPrincipalLocked(arn, id string) {
	rewrite := func(doc string) string {
		d, err := policy.Parse([]byte(doc))
		if err != nil {
			return doc
		}
		changed := false
		for _, st := range d.Statement {
			for _, p := range []*policy.Principal{st.Principal, st.NotPrincipal} {
				if p == nil || p.All {
					continue
				}
				for i, v := range p.IDs["AWS"] {
					if v == arn {
						p.IDs["AWS"][i], changed = id, true
					}
				}
			}
		}
		if !changed {
			return doc
		}
		b, err := json.Marshal(d)
		if err != nil {
			return doc
		}
		return string(b)
	}
	for _, b := range c.buckets {
		if b.policy != "" {
			b.policy = rewrite(b.policy)
		}
	}
	for _, k := range c.keys {
		k.policy = rewrite(k.policy)
	}
	for _, a := range c.accounts {
		for _, r := range a.roles {
			r.trust = rewrite(r.trust)
		}
	}
}

// encodeIAM percent-encodes a policy document the way IAM returns it
// (RFC 3986: everything but unreserved characters).
func encodeIAM(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch >= 'A' && ch <= 'Z' || ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || strings.IndexByte("-_.~", ch) >= 0 {
			b.WriteByte(ch)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[ch>>4])
		b.WriteByte(hex[ch&15])
	}
	return b.String()
}

// parsedPolicies remembers parsePolicy's answers. Every authorization the
// fake decides parses the policies involved, mostly the same few documents
// again and again; parsing them was a fifth of a busy dev-mode server's
// CPU, time that on AWS is AWS's. Callers only read what they get.
var parsedPolicies = struct {
	sync.Mutex
	m map[parseKey]parsed
}{m: map[parseKey]parsed{}}

// maxParsedPolicies bounds parsedPolicies; when full it starts over.
const maxParsedPolicies = 4096

type parseKey struct {
	doc              string
	resourceOptional bool
}

type parsed struct {
	d   policy.Document
	err error
}

// parsePolicy parses a policy document and applies the grammar checks AWS
// applies to every policy (checkPolicy), remembering the answer.
// resourceOptional is for trust policies.
func parsePolicy(doc string, resourceOptional bool) (policy.Document, error) {
	k := parseKey{doc, resourceOptional}
	parsedPolicies.Lock()
	p, ok := parsedPolicies.m[k]
	parsedPolicies.Unlock()
	if !ok {
		p.d, p.err = checkPolicy(doc, resourceOptional)
		parsedPolicies.Lock()
		if len(parsedPolicies.m) >= maxParsedPolicies {
			clear(parsedPolicies.m)
		}
		parsedPolicies.m[k] = p
		parsedPolicies.Unlock()
	}
	return p.d, p.err
}

// checkPolicy parses doc and checks what AWS checks of every policy: a
// known Version, an Effect of Allow or Deny, actions on every statement,
// and resources unless resourceOptional.
func checkPolicy(doc string, resourceOptional bool) (policy.Document, error) {
	d, err := policy.Parse([]byte(doc))
	if err != nil {
		return d, errSyntax
	}
	if d.Version != "" && d.Version != "2012-10-17" && d.Version != "2008-10-17" {
		return d, errSyntax
	}
	if len(d.Statement) == 0 {
		return d, errSyntax
	}
	for _, st := range d.Statement {
		if st.Effect != "Allow" && st.Effect != "Deny" {
			return d, errSyntax
		}
		if len(st.Action) == 0 && len(st.NotAction) == 0 {
			return d, errPolicyText("Policy statement must contain actions.")
		}
		if !resourceOptional && len(st.Resource) == 0 && len(st.NotResource) == 0 {
			return d, errPolicyText("Policy statement must contain resources.")
		}
	}
	return d, nil
}

type errPolicyText string

func (e errPolicyText) Error() string { return string(e) }

// errSyntax is IAM's and KMS's answer to a document that does not parse.
var errSyntax = errPolicyText("Syntax errors in policy.")
