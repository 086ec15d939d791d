package awsfake

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/bucketbridge/bucketbridge/internal/policy"
)

// Customer-managed policy quotas, from the IAM User Guide, "IAM and AWS STS
// quotas" (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html).
const (
	// maxManagedPolicySize bounds one managed policy document; IAM does not
	// count white space.
	maxManagedPolicySize = 6144
	// maxPolicyVersions is how many versions a managed policy keeps.
	maxPolicyVersions = 5
	// maxAttachedPerRole is the default quota of managed policies attached
	// to one role.
	maxAttachedPerRole = 10
)

// managedPolicy is a customer-managed IAM policy.
type managedPolicy struct {
	name, arn, id, path, description string
	created, updated                 time.Time
	// versions, oldest first.
	versions       []*policyVersion
	defaultVersion string
	nextVersion    int
}

// policyVersion is one version of a managed policy.
type policyVersion struct {
	id       string
	document string
	created  time.Time
}

func (p *managedPolicy) version(id string) *policyVersion {
	for _, v := range p.versions {
		if v.id == id {
			return v
		}
	}
	return nil
}

// defaultDocument returns the document of the default version.
func (p *managedPolicy) defaultDocument() string { return p.version(p.defaultVersion).document }

func (p *managedPolicy) sdk(attachments int) *iamtypes.Policy {
	return &iamtypes.Policy{
		PolicyName: aws.String(p.name), Arn: aws.String(p.arn), PolicyId: aws.String(p.id), Path: aws.String(p.path),
		DefaultVersionId: aws.String(p.defaultVersion), AttachmentCount: aws.Int32(int32(attachments)),
		PermissionsBoundaryUsageCount: aws.Int32(0), IsAttachable: true, Description: optString(p.description),
		CreateDate: aws.Time(p.created), UpdateDate: aws.Time(p.updated),
	}
}

func (v *policyVersion) sdk(isDefault bool, withDocument bool) iamtypes.PolicyVersion {
	out := iamtypes.PolicyVersion{VersionId: aws.String(v.id), IsDefaultVersion: isDefault, CreateDate: aws.Time(v.created)}
	if withDocument {
		out.Document = aws.String(encodeIAM(v.document))
	}
	return out
}

func policyNotFound(arn string) error {
	return typed(http.StatusNotFound, &iamtypes.NoSuchEntityException{Message: aws.String("Policy " + arn + " was not found.")})
}

func notAttachable(arn string) error {
	return typed(http.StatusNotFound, &iamtypes.NoSuchEntityException{Message: aws.String("Policy " + arn + " does not exist or is not attachable.")})
}

func deleteConflict(msg string) error {
	return typed(http.StatusConflict, &iamtypes.DeleteConflictException{Message: aws.String(msg)})
}

func limitExceeded(msg string) error {
	return typed(http.StatusConflict, &iamtypes.LimitExceededException{Message: aws.String(msg)})
}

// checkManagedDocument validates a managed policy document as IAM does:
// the grammar of an identity policy (no principal) and the size quota,
// answered with IAM's message ("Cannot exceed quota for PolicySize: 6144").
func checkManagedDocument(doc string) error {
	d, err := parsePolicy(doc, false)
	if err != nil {
		return malformedIAM(err.Error())
	}
	for _, st := range d.Statement {
		if st.Principal != nil || st.NotPrincipal != nil {
			return malformedIAM("Policy document should not specify a principal.")
		}
	}
	if nonSpaceLen(doc) > maxManagedPolicySize {
		return limitExceeded("Cannot exceed quota for PolicySize: " + strconv.Itoa(maxManagedPolicySize))
	}
	return nil
}

// policyLocked finds a managed policy of the caller's account by ARN.
func (m *IAM) policyLocked(arn *string) (*managedPolicy, error) {
	a := aws.ToString(arn)
	p, ok := m.c.accountLocked(m.caller.account).policies[a]
	if !ok {
		return nil, policyNotFound(a)
	}
	return p, nil
}

// attachmentsLocked counts the roles of the policy's account it is attached to.
func (c *Cloud) attachmentsLocked(account string, p *managedPolicy) int {
	n := 0
	for _, r := range c.accountLocked(account).roles {
		if slices.Contains(r.managed, p.arn) {
			n++
		}
	}
	return n
}

// CreatePolicy creates a customer-managed policy with version v1 as its
// default. Path defaults to "/" and is part of the ARN.
func (m *IAM) CreatePolicy(ctx context.Context, in *iam.CreatePolicyInput, _ ...func(*iam.Options)) (*iam.CreatePolicyOutput, error) {
	return do(ctx, m.c, m.caller, svcIAM, "CreatePolicy", func() (*iam.CreatePolicyOutput, error) {
		name := aws.ToString(in.PolicyName)
		if !policyNameRE.MatchString(name) {
			return nil, invalidInput("1 validation error detected: Value '" + name + "' at 'policyName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+")
		}
		path := cmp.Or(aws.ToString(in.Path), "/")
		if !iamPathRE.MatchString(path) {
			return nil, invalidInput("1 validation error detected: Value '" + path + "' at 'path' failed to satisfy constraint: Member must satisfy regular expression pattern: ((/[A-Za-z0-9\\.,\\+@=_-]+)*)/")
		}
		doc := aws.ToString(in.PolicyDocument)
		if err := checkManagedDocument(doc); err != nil {
			return nil, err
		}
		acct := m.c.accountLocked(m.caller.account)
		for _, p := range acct.policies {
			if p.name == name {
				return nil, typed(http.StatusConflict, &iamtypes.EntityAlreadyExistsException{Message: aws.String("A policy called " + name + " already exists. Duplicate names are not allowed.")})
			}
		}
		now := m.c.now()
		p := &managedPolicy{
			name: name, arn: "arn:aws:iam::" + m.caller.account + ":policy" + path + name, path: path,
			id: m.c.uniqueIDLocked("ANPA", m.caller.account, name, now), description: aws.ToString(in.Description),
			created: now, updated: now, defaultVersion: "v1", nextVersion: 2,
			versions: []*policyVersion{{id: "v1", document: doc, created: now}},
		}
		acct.policies[p.arn] = p
		return &iam.CreatePolicyOutput{Policy: p.sdk(0)}, nil
	})
}

// GetPolicy describes a managed policy, with its attachment count.
func (m *IAM) GetPolicy(ctx context.Context, in *iam.GetPolicyInput, _ ...func(*iam.Options)) (*iam.GetPolicyOutput, error) {
	return do(ctx, m.c, m.caller, svcIAM, "GetPolicy", func() (*iam.GetPolicyOutput, error) {
		p, err := m.policyLocked(in.PolicyArn)
		if err != nil {
			return nil, err
		}
		return &iam.GetPolicyOutput{Policy: p.sdk(m.c.attachmentsLocked(m.caller.account, p))}, nil
	})
}

// GetPolicyVersion returns one version of a managed policy, its document
// URL-encoded as IAM returns it.
func (m *IAM) GetPolicyVersion(ctx context.Context, in *iam.GetPolicyVersionInput, _ ...func(*iam.Options)) (*iam.GetPolicyVersionOutput, error) {
	return do(ctx, m.c, m.caller, svcIAM, "GetPolicyVersion", func() (*iam.GetPolicyVersionOutput, error) {
		p, err := m.policyLocked(in.PolicyArn)
		if err != nil {
			return nil, err
		}
		v := p.version(aws.ToString(in.VersionId))
		if v == nil {
			return nil, typed(http.StatusNotFound, &iamtypes.NoSuchEntityException{Message: aws.String("Policy " + p.arn + " version " + aws.ToString(in.VersionId) + " does not exist or is not attachable.")})
		}
		out := v.sdk(v.id == p.defaultVersion, true)
		return &iam.GetPolicyVersionOutput{PolicyVersion: &out}, nil
	})
}

// CreatePolicyVersion adds a version to a managed policy, the default one
// when SetAsDefault. A policy keeps at most 5 versions (IAM User Guide,
// "Versioning IAM policies",
// https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_managed-versioning.html):
// the sixth answers LimitExceeded with IAM's message.
func (m *IAM) CreatePolicyVersion(ctx context.Context, in *iam.CreatePolicyVersionInput, _ ...func(*iam.Options)) (*iam.CreatePolicyVersionOutput, error) {
	return do(ctx, m.c, m.caller, svcIAM, "CreatePolicyVersion", func() (*iam.CreatePolicyVersionOutput, error) {
		p, err := m.policyLocked(in.PolicyArn)
		if err != nil {
			return nil, err
		}
		doc := aws.ToString(in.PolicyDocument)
		if err := checkManagedDocument(doc); err != nil {
			return nil, err
		}
		if len(p.versions) >= maxPolicyVersions {
			return nil, limitExceeded("A managed policy can have up to 5 versions. Before you create a new version, you must delete an existing version.")
		}
		now := m.c.now()
		v := &policyVersion{id: "v" + strconv.Itoa(p.nextVersion), document: doc, created: now}
		p.nextVersion++
		p.versions = append(p.versions, v)
		if in.SetAsDefault {
			p.defaultVersion = v.id
		}
		p.updated = now
		out := v.sdk(v.id == p.defaultVersion, false)
		return &iam.CreatePolicyVersionOutput{PolicyVersion: &out}, nil
	})
}

// DeletePolicyVersion deletes a version that is not the default one
// (DeleteConflict "Cannot delete the default version of a policy.", IAM's
// message).
func (m *IAM) DeletePolicyVersion(ctx context.Context, in *iam.DeletePolicyVersionInput, _ ...func(*iam.Options)) (*iam.DeletePolicyVersionOutput, error) {
	return do(ctx, m.c, m.caller, svcIAM, "DeletePolicyVersion", func() (*iam.DeletePolicyVersionOutput, error) {
		p, err := m.policyLocked(in.PolicyArn)
		if err != nil {
			return nil, err
		}
		id := aws.ToString(in.VersionId)
		if p.version(id) == nil {
			return nil, typed(http.StatusNotFound, &iamtypes.NoSuchEntityException{Message: aws.String("Policy " + p.arn + " version " + id + " does not exist.")})
		}
		if id == p.defaultVersion {
			return nil, deleteConflict("Cannot delete the default version of a policy.")
		}
		p.versions = slices.DeleteFunc(p.versions, func(v *policyVersion) bool { return v.id == id })
		return &iam.DeletePolicyVersionOutput{}, nil
	})
}

// ListPolicyVersions lists a managed policy's versions, newest first,
// without their documents, paginated by Marker and MaxItems (default 100).
func (m *IAM) ListPolicyVersions(ctx context.Context, in *iam.ListPolicyVersionsInput, _ ...func(*iam.Options)) (*iam.ListPolicyVersionsOutput, error) {
	return do(ctx, m.c, m.caller, svcIAM, "ListPolicyVersions", func() (*iam.ListPolicyVersionsOutput, error) {
		p, err := m.policyLocked(in.PolicyArn)
		if err != nil {
			return nil, err
		}
		all := make([]iamtypes.PolicyVersion, 0, len(p.versions))
		for i := len(p.versions) - 1; i >= 0; i-- {
			all = append(all, p.versions[i].sdk(p.versions[i].id == p.defaultVersion, false))
		}
		page, more, marker := paginate(all, in.Marker, in.MaxItems)
		return &iam.ListPolicyVersionsOutput{Versions: page, IsTruncated: more, Marker: marker}, nil
	})
}

// paginate returns the page of items starting at the position Marker names
// (a decimal index, opaque to callers), at most MaxItems long (default 100).
func paginate[T any](items []T, marker *string, maxItems *int32) ([]T, bool, *string) {
	start, _ := strconv.Atoi(aws.ToString(marker))
	start = min(max(start, 0), len(items))
	n := int(aws.ToInt32(maxItems))
	if n <= 0 {
		n = 100
	}
	end := min(start+n, len(items))
	if end < len(items) {
		return items[start:end], true, aws.String(strconv.Itoa(end))
	}
	return items[start:end], false, nil
}

// AttachRolePolicy attaches a managed policy of the account to a role;
// attaching it again changes nothing. A role holds at most 10 managed
// policies (IAM's default quota): the eleventh answers LimitExceeded with
// IAM's message, "Cannot exceed quota for PoliciesPerRole: 10".
func (m *IAM) AttachRolePolicy(ctx context.Context, in *iam.AttachRolePolicyInput, _ ...func(*iam.Options)) (*iam.AttachRolePolicyOutput, error) {
	return do(ctx, m.c, m.caller, svcIAM, "AttachRolePolicy", func() (*iam.AttachRolePolicyOutput, error) {
		r, err := m.roleLocked(in.RoleName)
		if err != nil {
			return nil, err
		}
		arn := aws.ToString(in.PolicyArn)
		if _, ok := m.c.accountLocked(m.caller.account).policies[arn]; !ok {
			return nil, notAttachable(arn)
		}
		if slices.Contains(r.managed, arn) {
			return &iam.AttachRolePolicyOutput{}, nil
		}
		if len(r.managed) >= maxAttachedPerRole {
			return nil, limitExceeded("Cannot exceed quota for PoliciesPerRole: " + strconv.Itoa(maxAttachedPerRole))
		}
		r.managed = append(r.managed, arn)
		return &iam.AttachRolePolicyOutput{}, nil
	})
}

// DetachRolePolicy detaches a managed policy from a role; NoSuchEntity when
// it is not attached.
func (m *IAM) DetachRolePolicy(ctx context.Context, in *iam.DetachRolePolicyInput, _ ...func(*iam.Options)) (*iam.DetachRolePolicyOutput, error) {
	return do(ctx, m.c, m.caller, svcIAM, "DetachRolePolicy", func() (*iam.DetachRolePolicyOutput, error) {
		r, err := m.roleLocked(in.RoleName)
		if err != nil {
			return nil, err
		}
		arn := aws.ToString(in.PolicyArn)
		if !slices.Contains(r.managed, arn) {
			return nil, policyNotFound(arn)
		}
		r.managed = slices.DeleteFunc(r.managed, func(a string) bool { return a == arn })
		return &iam.DetachRolePolicyOutput{}, nil
	})
}

// ListAttachedRolePolicies lists the managed policies attached to a role,
// by name, filtered by PathPrefix, paginated by Marker and MaxItems.
func (m *IAM) ListAttachedRolePolicies(ctx context.Context, in *iam.ListAttachedRolePoliciesInput, _ ...func(*iam.Options)) (*iam.ListAttachedRolePoliciesOutput, error) {
	return do(ctx, m.c, m.caller, svcIAM, "ListAttachedRolePolicies", func() (*iam.ListAttachedRolePoliciesOutput, error) {
		r, err := m.roleLocked(in.RoleName)
		if err != nil {
			return nil, err
		}
		acct := m.c.accountLocked(m.caller.account)
		var all []iamtypes.AttachedPolicy
		for _, arn := range r.managed {
			p, ok := acct.policies[arn]
			if !ok || !strings.HasPrefix(p.path, cmp.Or(aws.ToString(in.PathPrefix), "/")) {
				continue
			}
			all = append(all, iamtypes.AttachedPolicy{PolicyName: aws.String(p.name), PolicyArn: aws.String(p.arn)})
		}
		sort.Slice(all, func(i, j int) bool { return aws.ToString(all[i].PolicyName) < aws.ToString(all[j].PolicyName) })
		page, more, marker := paginate(all, in.Marker, in.MaxItems)
		return &iam.ListAttachedRolePoliciesOutput{AttachedPolicies: page, IsTruncated: more, Marker: marker}, nil
	})
}

// DeletePolicy deletes a managed policy that is attached to nothing and has
// no version but its default one; DeleteConflict otherwise, with IAM's
// messages (IAM API Reference, DeletePolicy: "you must delete all the
// policy's versions" first and detach it from every entity,
// https://docs.aws.amazon.com/IAM/latest/APIReference/API_DeletePolicy.html).
func (m *IAM) DeletePolicy(ctx context.Context, in *iam.DeletePolicyInput, _ ...func(*iam.Options)) (*iam.DeletePolicyOutput, error) {
	return do(ctx, m.c, m.caller, svcIAM, "DeletePolicy", func() (*iam.DeletePolicyOutput, error) {
		p, err := m.policyLocked(in.PolicyArn)
		if err != nil {
			return nil, err
		}
		if m.c.attachmentsLocked(m.caller.account, p) > 0 {
			return nil, deleteConflict("Cannot delete a policy attached to entities.")
		}
		if len(p.versions) > 1 {
			return nil, deleteConflict("This policy has more than one version. Before you delete a policy, you must delete the policy's versions. The default version is deleted with the policy.")
		}
		delete(m.c.accountLocked(m.caller.account).policies, p.arn)
		return &iam.DeletePolicyOutput{}, nil
	})
}

// identityLocked returns what the role's own policies say: its inline
// policies and the default versions of its attached managed policies, and
// its permissions boundary when it has one.
func (c *Cloud) identityLocked(r *role) identity {
	var id identity
	names := make([]string, 0, len(r.inline))
	for n := range r.inline {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if d, err := parsePolicy(r.inline[n], false); err == nil {
			id.policies = append(id.policies, d)
		}
	}
	acct := c.accountLocked(roleAccount(r))
	for _, arn := range r.managed {
		if p, ok := acct.policies[arn]; ok {
			if d, err := parsePolicy(p.defaultDocument(), false); err == nil {
				id.policies = append(id.policies, d)
			}
		}
	}
	if r.boundary != "" {
		var d policy.Document
		if p, ok := acct.policies[r.boundary]; ok {
			d, _ = parsePolicy(p.defaultDocument(), false)
		}
		id.boundary = &d // a boundary that is gone or does not parse allows nothing
	}
	return id
}

// roleAccount returns the account of a role, from its ARN.
func roleAccount(r *role) string { return strings.Split(r.arn, ":")[4] }
