package provision

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/bucketbridge/bucketbridge/internal/policy"
)

// Tags on the roles bucketbridge creates. Only a role carrying
// ManagedByTag=ManagedByValue is ever deleted by bucketbridge.
const (
	ManagedByTag       = "managed-by"
	ManagedByValue     = "bucketbridge"
	sourceBucketTagKey = "bucketbridge-source-bucket"
)

// maxPolicyVersions is how many versions IAM keeps of a managed policy; a
// new one needs an old one deleted first (IAM User Guide, "Versioning IAM
// policies").
// https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_managed-versioning.html
const maxPolicyVersions = 5

// roleState is how a step records the replication role.
type roleState struct {
	ARN       string          `json:"arn"`
	Name      string          `json:"name"`
	Adopted   bool            `json:"adopted"`
	Trust     policy.Document `json:"trust_policy"`
	Boundary  string          `json:"permissions_boundary,omitempty"`
	CreatedAt *time.Time      `json:"created_at,omitempty"`
}

// getRole reads a role; nil when it does not exist.
func getRole(ctx context.Context, acct *Account, name string) (*iamtypes.Role, error) {
	out, err := acct.IAM.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)})
	switch {
	case IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, err
	case out.Role == nil:
		return nil, errors.New("get role " + name + ": no role in the answer")
	}
	return out.Role, nil
}

func managedByUs(r *iamtypes.Role) bool {
	for _, t := range r.Tags {
		if aws.ToString(t.Key) == ManagedByTag && aws.ToString(t.Value) == ManagedByValue {
			return true
		}
	}
	return false
}

// trustsS3 reports whether a trust policy lets s3.amazonaws.com assume the role.
func trustsS3(d policy.Document) bool {
	for _, st := range d.Statement {
		if st.Effect != "Allow" || st.Principal == nil || len(st.NotAction) > 0 {
			continue
		}
		var s3 bool
		for _, id := range st.Principal.IDs["Service"] {
			s3 = s3 || id == "s3.amazonaws.com"
		}
		if !s3 && !st.Principal.All {
			continue
		}
		for _, a := range st.Action {
			switch strings.ToLower(a) {
			case "sts:assumerole", "sts:*", "*":
				return true
			}
		}
	}
	return false
}

// otherTrusted lists the principals other than s3.amazonaws.com that a
// trust policy lets assume the role ("*" for anyone), in document order.
func otherTrusted(d policy.Document) []string {
	var out []string
	for _, st := range d.Statement {
		if st.Effect != "Allow" || st.Principal == nil {
			continue
		}
		assumes := len(st.NotAction) > 0
		for _, a := range st.Action {
			a = strings.ToLower(a)
			assumes = assumes || a == "*" || strings.HasPrefix(a, "sts:assumerole") || a == "sts:*"
		}
		if !assumes {
			continue
		}
		if st.Principal.All {
			out = append(out, "*")
			continue
		}
		types := slices.Sorted(maps.Keys(st.Principal.IDs))
		for _, typ := range types {
			for _, id := range st.Principal.IDs[typ] {
				if typ == "Service" && id == "s3.amazonaws.com" {
					continue
				}
				out = append(out, typ+":"+id)
			}
		}
	}
	return slices.Compact(out)
}

// boundaryARN is the permissions boundary bucketbridge's roles are created
// with in the source account, or "" when none is configured.
func boundaryARN(run *Run) string {
	if run.Config.RoleBoundary == "" {
		return ""
	}
	src := run.Replication.Source
	return policy.ManagedPolicyARN(policy.Partition(src.Region), src.AccountID, run.Config.RoleBoundary)
}

// ensureReplicationRole creates bucketbridge's role for the source bucket, or
// checks the adopted one (docs/ARCHITECTURE.md, The steps). bucketbridge's
// own role gets the trust policy of docs/ARCHITECTURE.md (The documents) and
// the configured permissions boundary; an adopted role's trust policy is
// only checked: it must let S3 assume the role, and is never rewritten.
// Once the role is known to exist, the run learns its ARN, which lets other
// requests name it.
func ensureReplicationRole(ctx context.Context, run *Run) (Result, error) {
	// The first step after both inspections checks what they found together.
	if f := run.Facts(); f.SourceObjectLock && !f.DestinationObjectLock {
		src, dst := run.Replication.Source, run.Replication.Destination
		return Result{}, Permanent(fmt.Sprintf("source bucket %s has S3 Object Lock enabled and destination bucket %s does not: S3 replicates objects under Object Lock only into a bucket with Object Lock (S3 User Guide, \"Using Object Lock with S3 Replication\"); enable Object Lock on %s, or replicate into another bucket that has it", src.Bucket, dst.Bucket, dst.Bucket), nil)
	}
	res, err := ensureRole(ctx, run)
	if err == nil {
		arn := input(run).RoleARN()
		run.Learn(func(f *Facts) { f.RoleARN = arn })
	}
	return res, err
}

// ensureRole is ensureReplicationRole's work; its caller holds the role's lock.
func ensureRole(ctx context.Context, run *Run) (Result, error) {
	in := input(run)
	arn, name := in.RoleARN(), roleName(run)
	side := run.Replication.Source
	c := func(action string) call { return call{Account: side.AccountID, Action: action, Resource: arn} }
	facts := run.Facts()
	want := policy.TrustPolicy(in)
	// A role no request is known to use is most likely missing: create it
	// straight away, and read it only when IAM says it exists.
	known, err := roleInUse(ctx, run, arn)
	if err != nil {
		return Result{}, err
	}
	var role *iamtypes.Role
	if known || facts.RoleAdopted {
		if role, err = getRole(ctx, run.Source, name); err != nil {
			return Result{}, classify(err, c("iam:GetRole"))
		}
	}
	if role == nil {
		if facts.RoleAdopted {
			return Result{}, Permanent(fmt.Sprintf("role %s, named by the replication configuration of source bucket %s, does not exist: restore it, or remove that configuration's rules so that bucketbridge can create its own role", arn, side.Bucket), nil)
		}
		create := &iam.CreateRoleInput{
			RoleName:                 aws.String(name),
			AssumeRolePolicyDocument: aws.String(mustJSON(want)),
			Description:              aws.String("S3 replication role for bucket " + side.Bucket + ", managed by bucketbridge"),
			Tags: []iamtypes.Tag{
				{Key: aws.String(ManagedByTag), Value: aws.String(ManagedByValue)},
				{Key: aws.String(sourceBucketTagKey), Value: aws.String(side.Bucket)},
			},
		}
		if b := boundaryARN(run); b != "" {
			create.PermissionsBoundary = aws.String(b)
		}
		run.wrotePermissions()
		out, err := run.Source.IAM.CreateRole(ctx, create)
		var exists *iamtypes.EntityAlreadyExistsException
		switch {
		case errors.As(err, &exists) || errorCode(err) == "EntityAlreadyExists":
			// Made earlier, by another request, by our own earlier attempt
			// whose answer was lost, or outside bucketbridge: check it like
			// any existing role.
			if role, err = getRole(ctx, run.Source, name); err != nil || role == nil {
				return Result{}, classify(errors.Join(errors.New("role exists but cannot be read"), err), c("iam:GetRole"))
			}
		case IsNotFound(err) && create.PermissionsBoundary != nil:
			return Result{}, Permanent(fmt.Sprintf("the permissions boundary %s (BB_ROLE_PERMISSIONS_BOUNDARY) does not exist in account %s: create that managed policy there (docs/PROVISIONER.md gives its content), or unset the setting", aws.ToString(create.PermissionsBoundary), side.AccountID), err)
		case err != nil:
			return Result{}, classify(err, c("iam:CreateRole"))
		default:
			// IAM's answer to CreateRole is the role as created.
			at := run.now()
			if out.Role != nil && out.Role.CreateDate != nil {
				at = *out.Role.CreateDate
			}
			run.Learn(func(f *Facts) { f.RoleCreatedAt = &at; f.RoleName = name; f.RoleAdopted = false })
			return Result{Changed: true, After: roleState{ARN: arn, Name: name, Trust: want, Boundary: boundaryARN(run), CreatedAt: &at}}, nil
		}
	}
	trust, err := policy.DecodeIAM(aws.ToString(role.AssumeRolePolicyDocument))
	if err != nil {
		return Result{}, Permanent(fmt.Sprintf("the trust policy of role %s does not parse; fix it by hand", arn), err)
	}
	state := roleState{ARN: arn, Name: name, Trust: trust, CreatedAt: role.CreateDate}
	if role.PermissionsBoundary != nil {
		state.Boundary = aws.ToString(role.PermissionsBoundary.PermissionsBoundaryArn)
	}
	if got := aws.ToString(role.Arn); got != "" && got != arn {
		return Result{}, Permanent(fmt.Sprintf("role %s is %s in IAM (its path differs): bucketbridge names roles by their full ARN in policies; delete or rename that role, or name the role with its path in the source bucket's replication configuration", arn, got), nil)
	}
	if facts.RoleAdopted || !managedByUs(role) {
		// Not ours: use it as it is.
		state.Adopted = true
		if !facts.RoleAdopted {
			run.Learn(func(f *Facts) { f.RoleName = name; f.RoleAdopted = true })
		}
		if !trustsS3(trust) {
			return Result{}, Permanent(fmt.Sprintf("role %s (not created by bucketbridge, so adopted as it is) does not let s3.amazonaws.com assume it, so S3 cannot replicate with it: add a statement allowing {\"Service\": \"s3.amazonaws.com\"} sts:AssumeRole to its trust policy (bucketbridge never rewrites a trust policy it does not own), then retry", arn), nil)
		}
		var warnings []Warning
		if others := otherTrusted(trust); len(others) > 0 {
			warnings = append(warnings, warn(WarningAdoptedRoleTrust,
				"adopted role %s may also be assumed by %s, not only by s3.amazonaws.com: whoever assumes it gets the replication permissions bucketbridge adds to it (reading %s's objects and decrypting with %s, writing into the destination bucket and encrypting with its key). bucketbridge never rewrites a trust policy it does not own; if those principals need not replicate, remove them from the role's trust policy, or remove the source bucket's replication configuration so that bucketbridge creates a role of its own",
				arn, strings.Join(others, ", "), side.Bucket, side.KMSKeyARN))
		}
		return Result{Before: state, After: state, Warnings: warnings}, nil
	}
	if facts.RoleCreatedAt == nil && role.CreateDate != nil {
		at := *role.CreateDate
		run.Learn(func(f *Facts) { f.RoleCreatedAt = &at })
	}
	if policy.Equal(trust, want) {
		return Result{Before: state, After: state}, nil
	}
	run.wrotePermissions()
	if _, err := run.Source.IAM.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String(name), PolicyDocument: aws.String(mustJSON(want))}); err != nil {
		return Result{}, classify(err, c("iam:UpdateAssumeRolePolicy"))
	}
	got, err := getRole(ctx, run.Source, name)
	if err != nil || got == nil {
		return Result{}, fmt.Errorf("confirm trust policy of %s: %w", arn, errors.Join(errors.New("role not found"), err))
	}
	if gotTrust, err := policy.DecodeIAM(aws.ToString(got.AssumeRolePolicyDocument)); err != nil || !policy.Equal(gotTrust, want) {
		return Result{}, fmt.Errorf("confirm trust policy of %s: it reads back differently", arn)
	}
	after := state
	after.Trust = want
	return Result{Changed: true, Before: state, After: after}, nil
}

// roleInUse reports whether a request holding documents is known to use
// the role (its facts name it).
func roleInUse(ctx context.Context, run *Run, arn string) (bool, error) {
	peers, err := run.peers(ctx, PeerFilter{SourceBucket: run.Replication.Source.Bucket})
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(peers, func(p Peer) bool { return p.Facts.RoleARN == arn }), nil
}

// rolePolicies are the permission documents on a role: inline ones by name,
// and attached customer-managed ones bucketbridge owns, by name, with the
// count of the attached ones it does not.
type rolePolicies struct {
	inline       map[string]policy.Document
	managed      map[string]attachedPolicy
	otherManaged int
}

// attachedPolicy is a managed policy bucketbridge owns that is attached to
// the role, with its default version.
type attachedPolicy struct {
	ARN      string
	Document policy.Document
}

// owned returns bucketbridge's documents on the role, inline and managed,
// by name.
func (p rolePolicies) owned() map[string]policy.Document {
	out := map[string]policy.Document{}
	for n, d := range p.inline {
		if policy.IsOwnedPolicyName(n) {
			out[n] = d
		}
	}
	for n, m := range p.managed {
		out[n] = m.Document
	}
	return out
}

// otherInlineChars is the size, as IAM counts it, of the inline policies
// bucketbridge does not own.
func (p rolePolicies) otherInlineChars() int {
	n := 0
	for name, d := range p.inline {
		if !policy.IsOwnedPolicyName(name) {
			n += policy.PolicyChars(d)
		}
	}
	return n
}

// readRolePolicies reads a role's inline policies and the managed policies
// attached to it, each list and then each document at once. A role that
// does not exist is an error IsNotFound recognises.
func readRolePolicies(ctx context.Context, acct *Account, role string) (rolePolicies, error) {
	out := rolePolicies{inline: map[string]policy.Document{}, managed: map[string]attachedPolicy{}}
	var names []string
	var attached []iamtypes.AttachedPolicy
	err := inParallel(2, func(i int) (err error) {
		if i == 0 {
			names, err = listRolePolicies(ctx, acct, role)
		} else {
			attached, err = listAttachedRolePolicies(ctx, acct, role)
		}
		return err
	})
	if err != nil {
		return out, err
	}
	all := len(attached)
	attached = slices.DeleteFunc(attached, func(a iamtypes.AttachedPolicy) bool {
		return !policy.IsOwnedPolicyName(aws.ToString(a.PolicyName))
	})
	out.otherManaged = all - len(attached)
	docs := make([]*policy.Document, len(names)+len(attached))
	err = inParallel(len(docs), func(i int) (err error) {
		if i < len(names) {
			docs[i], err = getRolePolicy(ctx, acct, role, names[i])
		} else {
			docs[i], err = managedPolicyDocument(ctx, acct, aws.ToString(attached[i-len(names)].PolicyArn))
		}
		return err
	})
	if err != nil {
		return out, err
	}
	for i, d := range docs {
		switch {
		case d == nil:
		case i < len(names):
			out.inline[names[i]] = *d
		default:
			a := attached[i-len(names)]
			out.managed[aws.ToString(a.PolicyName)] = attachedPolicy{ARN: aws.ToString(a.PolicyArn), Document: *d}
		}
	}
	return out, nil
}

// managedPolicyDocument reads the default version of a managed policy; nil
// when the policy does not exist.
func managedPolicyDocument(ctx context.Context, acct *Account, arn string) (*policy.Document, error) {
	p, err := acct.IAM.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: aws.String(arn)})
	switch {
	case IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, err
	case p.Policy == nil:
		return nil, errors.New("get policy " + arn + ": no policy in the answer")
	}
	v, err := acct.IAM.GetPolicyVersion(ctx, &iam.GetPolicyVersionInput{PolicyArn: aws.String(arn), VersionId: p.Policy.DefaultVersionId})
	switch {
	case IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, err
	case v.PolicyVersion == nil:
		return nil, errors.New("get policy version of " + arn + ": no version in the answer")
	}
	doc, err := policy.DecodeIAM(aws.ToString(v.PolicyVersion.Document))
	if err != nil {
		return nil, Permanent(fmt.Sprintf("managed policy %s does not parse; fix it by hand", arn), err)
	}
	return &doc, nil
}

func listRolePolicies(ctx context.Context, acct *Account, role string) ([]string, error) {
	var names []string
	var marker *string
	for {
		out, err := acct.IAM.ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: aws.String(role), Marker: marker})
		if err != nil {
			return nil, err
		}
		names = append(names, out.PolicyNames...)
		if !out.IsTruncated || out.Marker == nil {
			return names, nil
		}
		marker = out.Marker
	}
}

func listAttachedRolePolicies(ctx context.Context, acct *Account, role string) ([]iamtypes.AttachedPolicy, error) {
	var out []iamtypes.AttachedPolicy
	var marker *string
	for {
		page, err := acct.IAM.ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(role), Marker: marker})
		if err != nil {
			return nil, err
		}
		out = append(out, page.AttachedPolicies...)
		if !page.IsTruncated || page.Marker == nil {
			return out, nil
		}
		marker = page.Marker
	}
}

// getRolePolicy reads an inline policy; nil when it does not exist.
func getRolePolicy(ctx context.Context, acct *Account, role, name string) (*policy.Document, error) {
	out, err := acct.IAM.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String(name)})
	switch {
	case IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, err
	}
	doc, err := policy.DecodeIAM(aws.ToString(out.PolicyDocument))
	if err != nil {
		return nil, Permanent(fmt.Sprintf("inline policy %s of role %s does not parse; fix it by hand", name, role), err)
	}
	return &doc, nil
}

// rolePoliciesChange is how the role policy steps record what they did.
type rolePoliciesChange struct {
	Role string `json:"role"`
	// Targets counts the requests the role replicates for.
	Targets int `json:"targets"`
	// Policies are bucketbridge's documents on the role, by name.
	Policies map[string]policy.Document `json:"policies"`
	// RoleCreated records the role, when the step had to create it again.
	RoleCreated any `json:"role_created,omitempty"`
}

// syncRolePolicies computes the replication role's permissions from every
// request from the source bucket that uses the role (Run.peers), packed
// into its inline policy and customer-managed policies, and converges the
// role on them: it writes what changed in an order that keeps every grant
// in place throughout, then deletes what is no longer needed. Provisioning
// adds this request's grants; removal takes them out and, with the last
// request, leaves none of bucketbridge's policies on the role.
func syncRolePolicies(ctx context.Context, run *Run) (Result, error) {
	in := input(run)
	arn, name := in.RoleARN(), roleName(run)
	src := run.Replication.Source
	c := func(action string) call { return call{Account: src.AccountID, Action: action, Resource: arn} }
	provisioning := run.Replication.Phase == PhaseProvision

	var recreated any
	current, err := readRolePolicies(ctx, run.Source, name)
	switch {
	case IsNotFound(err) && !provisioning:
		return Result{After: rolePoliciesChange{Role: arn}}, nil
	case IsNotFound(err):
		// The role went after ensure_replication_role ran (deleted outside
		// bucketbridge): create it again, and say so in this step's record.
		res, err := ensureRole(ctx, run)
		if err != nil {
			return Result{}, err
		}
		recreated = res.After
		if current, err = readRolePolicies(ctx, run.Source, name); err != nil {
			return Result{}, classify(err, c("iam:ListRolePolicies"))
		}
	case err != nil:
		return Result{}, classify(err, c("iam:ListRolePolicies"))
	}

	peers, err := run.peers(ctx, PeerFilter{SourceBucket: src.Bucket})
	if err != nil {
		return Result{}, err
	}
	var targets []policy.RoleTarget
	for _, p := range peers {
		if p.Facts.RoleARN != arn && p.ID != run.Replication.ID {
			continue
		}
		targets = append(targets, policy.RoleTarget{
			SourceKMSKeyARN: p.Source.KMSKeyARN, Destination: p.Destination.policy(), Prefix: p.Rule.Prefix,
			DestinationOwnerEnforced: p.Facts.DestinationOwnerEnforced,
		})
	}
	before := rolePoliciesChange{Role: arn, Policies: current.owned()}
	want := policy.RolePolicies{}
	if len(targets) > 0 {
		want, err = policy.BuildRolePolicies(policy.RoleInput{
			Role: arn, Source: src.policy(), ObjectLock: run.Facts().SourceObjectLock, Targets: targets,
			OtherInlineChars: current.otherInlineChars(), OtherManagedPolicies: current.otherManaged,
		})
		if err != nil {
			return Result{}, classify(err, c("iam:PutRolePolicy"))
		}
	}
	after := rolePoliciesChange{Role: arn, Targets: len(targets), Policies: map[string]policy.Document{}, RoleCreated: recreated}
	changed := recreated != nil
	byName := map[string]any{}
	for _, p := range want.Inline {
		byName[p.Name], after.Policies[p.Name] = p, p.Document
	}
	for _, m := range want.Managed {
		byName[m.Name], after.Policies[m.Name] = m, m.Document
	}
	for _, n := range policy.RoleWriteOrder(before.Policies, want) {
		var wrote bool
		switch p := byName[n].(type) {
		case policy.NamedPolicy:
			wrote, err = putInlinePolicy(ctx, run, name, p, current.inline)
		case policy.ManagedPolicy:
			wrote, err = putManagedPolicy(ctx, run, name, p, current.managed)
		}
		if err != nil {
			return Result{}, err
		}
		changed = changed || wrote
	}
	for n := range before.Policies {
		if _, keep := after.Policies[n]; keep {
			continue
		}
		if m, ok := current.managed[n]; ok {
			err = deleteManagedPolicy(ctx, run, name, m.ARN)
		} else {
			err = deleteInlinePolicy(ctx, run, name, n)
		}
		if err != nil {
			return Result{}, err
		}
		changed = true
	}
	if !changed || !run.confirmWrites() {
		return Result{Changed: changed, Before: before, After: after}, nil
	}
	got, err := readRolePolicies(ctx, run.Source, name)
	if err != nil {
		return Result{}, classify(err, c("iam:ListRolePolicies"))
	}
	if !samePolicies(got.owned(), after.Policies) {
		return Result{}, fmt.Errorf("confirm the policies of role %s: they read back differently", arn)
	}
	return Result{Changed: true, Before: before, After: after}, nil
}

// samePolicies reports whether two sets of named documents grant the same.
func samePolicies(a, b map[string]policy.Document) bool {
	if len(a) != len(b) {
		return false
	}
	for n, d := range a {
		if w, ok := b[n]; !ok || !policy.Equal(d, w) {
			return false
		}
	}
	return true
}

// putInlinePolicy writes an inline policy unless current already holds it.
func putInlinePolicy(ctx context.Context, run *Run, role string, p policy.NamedPolicy, current map[string]policy.Document) (bool, error) {
	if d, ok := current[p.Name]; ok && policy.Equal(d, p.Document) {
		return false, nil
	}
	run.wrotePermissions()
	_, err := run.Source.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{
		RoleName: aws.String(role), PolicyName: aws.String(p.Name), PolicyDocument: aws.String(mustJSON(p.Document)),
	})
	if err != nil {
		return false, classify(err, call{Account: run.Replication.Source.AccountID, Action: "iam:PutRolePolicy", Resource: role + "/" + p.Name})
	}
	return true, nil
}

// deleteInlinePolicy deletes an inline policy; one already gone is fine.
func deleteInlinePolicy(ctx context.Context, run *Run, role, name string) error {
	run.wrotePermissions()
	_, err := run.Source.IAM.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String(name)})
	if err != nil && !IsNotFound(err) {
		return classify(err, call{Account: run.Replication.Source.AccountID, Action: "iam:DeleteRolePolicy", Resource: role + "/" + name})
	}
	return nil
}

// putManagedPolicy makes the customer-managed policy p exist with p's
// document as its default version, and attached to the role.
func putManagedPolicy(ctx context.Context, run *Run, role string, p policy.ManagedPolicy, attached map[string]attachedPolicy) (bool, error) {
	acct := run.Source
	c := func(action string) call {
		return call{Account: run.Replication.Source.AccountID, Action: action, Resource: p.ARN}
	}
	if a, ok := attached[p.Name]; ok && policy.Equal(a.Document, p.Document) {
		return false, nil
	}
	doc, err := managedPolicyDocument(ctx, acct, p.ARN)
	if err != nil {
		return false, classify(err, c("iam:GetPolicy"))
	}
	run.wrotePermissions()
	switch {
	case doc == nil:
		_, err := acct.IAM.CreatePolicy(ctx, &iam.CreatePolicyInput{
			PolicyName: aws.String(p.Name), PolicyDocument: aws.String(mustJSON(p.Document)),
			Description: aws.String("S3 replication permissions of role " + role + ", managed by bucketbridge"),
		})
		var exists *iamtypes.EntityAlreadyExistsException
		if err != nil && !errors.As(err, &exists) && errorCode(err) != "EntityAlreadyExists" {
			return false, classify(err, c("iam:CreatePolicy"))
		}
		if err != nil {
			// Created meanwhile by our own earlier attempt: give it the
			// document as a new version.
			if err := newPolicyVersion(ctx, run, p); err != nil {
				return false, err
			}
		}
	case !policy.Equal(*doc, p.Document):
		if err := newPolicyVersion(ctx, run, p); err != nil {
			return false, err
		}
	}
	if _, ok := attached[p.Name]; !ok {
		if _, err := acct.IAM.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String(role), PolicyArn: aws.String(p.ARN)}); err != nil {
			return false, classify(err, c("iam:AttachRolePolicy"))
		}
	}
	return true, nil
}

// newPolicyVersion makes p's document the default version of its policy,
// deleting the oldest version that is not the default first when IAM's
// limit of versions is reached.
func newPolicyVersion(ctx context.Context, run *Run, p policy.ManagedPolicy) error {
	acct := run.Source
	c := func(action string) call {
		return call{Account: run.Replication.Source.AccountID, Action: action, Resource: p.ARN}
	}
	versions, err := policyVersions(ctx, acct, p.ARN)
	if err != nil {
		return classify(err, c("iam:ListPolicyVersions"))
	}
	if len(versions) >= maxPolicyVersions {
		for _, v := range versions { // oldest first
			if !v.IsDefaultVersion {
				if _, err := acct.IAM.DeletePolicyVersion(ctx, &iam.DeletePolicyVersionInput{PolicyArn: aws.String(p.ARN), VersionId: v.VersionId}); err != nil && !IsNotFound(err) {
					return classify(err, c("iam:DeletePolicyVersion"))
				}
				break
			}
		}
	}
	_, err = acct.IAM.CreatePolicyVersion(ctx, &iam.CreatePolicyVersionInput{
		PolicyArn: aws.String(p.ARN), PolicyDocument: aws.String(mustJSON(p.Document)), SetAsDefault: true,
	})
	if err != nil {
		return classify(err, c("iam:CreatePolicyVersion"))
	}
	return nil
}

// policyVersions lists a managed policy's versions, oldest first.
func policyVersions(ctx context.Context, acct *Account, arn string) ([]iamtypes.PolicyVersion, error) {
	var out []iamtypes.PolicyVersion
	var marker *string
	for {
		page, err := acct.IAM.ListPolicyVersions(ctx, &iam.ListPolicyVersionsInput{PolicyArn: aws.String(arn), Marker: marker})
		if err != nil {
			return nil, err
		}
		out = append(out, page.Versions...)
		if !page.IsTruncated || page.Marker == nil {
			break
		}
		marker = page.Marker
	}
	slices.SortFunc(out, func(a, b iamtypes.PolicyVersion) int {
		return aws.ToTime(a.CreateDate).Compare(aws.ToTime(b.CreateDate))
	})
	return out, nil
}

// deleteManagedPolicy detaches a customer-managed policy bucketbridge owns
// from the role and deletes it with its versions; one already gone is fine.
func deleteManagedPolicy(ctx context.Context, run *Run, role, arn string) error {
	acct := run.Source
	c := func(action string) call {
		return call{Account: run.Replication.Source.AccountID, Action: action, Resource: arn}
	}
	run.wrotePermissions()
	if _, err := acct.IAM.DetachRolePolicy(ctx, &iam.DetachRolePolicyInput{RoleName: aws.String(role), PolicyArn: aws.String(arn)}); err != nil && !IsNotFound(err) {
		return classify(err, c("iam:DetachRolePolicy"))
	}
	versions, err := policyVersions(ctx, acct, arn)
	if IsNotFound(err) {
		return nil
	}
	if err != nil {
		return classify(err, c("iam:ListPolicyVersions"))
	}
	for _, v := range versions {
		if v.IsDefaultVersion {
			continue
		}
		if _, err := acct.IAM.DeletePolicyVersion(ctx, &iam.DeletePolicyVersionInput{PolicyArn: aws.String(arn), VersionId: v.VersionId}); err != nil && !IsNotFound(err) {
			return classify(err, c("iam:DeletePolicyVersion"))
		}
	}
	if _, err := acct.IAM.DeletePolicy(ctx, &iam.DeletePolicyInput{PolicyArn: aws.String(arn)}); err != nil && !IsNotFound(err) {
		return classify(err, c("iam:DeletePolicy"))
	}
	return nil
}

// roleKept says why delete_role left the role in place.
type roleKept struct {
	Role string `json:"role"`
	Kept string `json:"kept"`
	// Requests are the requests still using the role.
	Requests []string `json:"requests,omitempty"`
	// Policies are the policies bucketbridge does not own left on it.
	Policies []string `json:"policies,omitempty"`
}

// deleteRole deletes the replication role when bucketbridge created it and
// no request holding documents uses it any more. A role that carries
// policies bucketbridge does not own is left in place.
func deleteRole(ctx context.Context, run *Run) (Result, error) {
	in := input(run)
	arn, name := in.RoleARN(), roleName(run)
	src := run.Replication.Source
	if run.Facts().RoleAdopted {
		return Result{Skipped: true, After: roleKept{Role: arn, Kept: "adopted: not created by bucketbridge"}}, nil
	}
	c := func(action string) call { return call{Account: src.AccountID, Action: action, Resource: arn} }
	peers, err := run.peers(ctx, PeerFilter{SourceBucket: src.Bucket})
	if err != nil {
		return Result{}, err
	}
	var users []string
	for _, p := range peers {
		if p.Facts.RoleARN == arn {
			users = append(users, p.ID)
		}
	}
	if len(users) > 0 {
		return Result{After: roleKept{Role: arn, Kept: "other requests from " + src.Bucket + " use it", Requests: users}}, nil
	}
	role, err := getRole(ctx, run.Source, name)
	if err != nil {
		return Result{}, classify(err, c("iam:GetRole"))
	}
	if role == nil {
		return Result{}, nil
	}
	if !managedByUs(role) {
		return Result{Skipped: true, After: roleKept{Role: arn, Kept: "not tagged " + ManagedByTag + "=" + ManagedByValue}}, nil
	}
	left, err := readRolePolicies(ctx, run.Source, name)
	if err != nil {
		return Result{}, classify(err, c("iam:ListRolePolicies"))
	}
	trust, _ := policy.DecodeIAM(aws.ToString(role.AssumeRolePolicyDocument))
	before := roleState{ARN: arn, Name: name, Trust: trust, CreatedAt: role.CreateDate}
	var foreign []string
	for n := range left.inline {
		if !policy.IsOwnedPolicyName(n) {
			foreign = append(foreign, n)
		}
	}
	if len(foreign) > 0 || left.otherManaged > 0 {
		slices.Sort(foreign)
		return Result{Before: before, After: roleKept{Role: arn, Kept: "policies bucketbridge does not own are on it", Policies: foreign}}, nil
	}
	// What the removal of the last request's permissions left (a crash
	// between its writes) goes with the role.
	for n := range left.inline {
		if err := deleteInlinePolicy(ctx, run, name, n); err != nil {
			return Result{}, err
		}
	}
	for _, m := range left.managed {
		if err := deleteManagedPolicy(ctx, run, name, m.ARN); err != nil {
			return Result{}, err
		}
	}
	_, err = run.Source.IAM.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String(name)})
	var conflict *iamtypes.DeleteConflictException
	switch {
	case err == nil || IsNotFound(err):
	case errors.As(err, &conflict) || errorCode(err) == "DeleteConflict":
		return Result{}, Permanent(fmt.Sprintf("role %s cannot be deleted: something else is attached to it (a managed policy or an instance profile); detach it, or delete the role by hand", arn), err)
	default:
		return Result{}, classify(err, c("iam:DeleteRole"))
	}
	if got, err := getRole(ctx, run.Source, name); err != nil || got != nil {
		return Result{}, fmt.Errorf("confirm deletion of role %s: %w", arn, errors.Join(errors.New("still there"), err))
	}
	return Result{Changed: true, Before: before}, nil
}
