package provision

import (
	"context"
	"errors"
	"fmt"
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

// roleState is how a step records the replication role.
type roleState struct {
	ARN       string          `json:"arn"`
	Name      string          `json:"name"`
	Adopted   bool            `json:"adopted"`
	Trust     policy.Document `json:"trust_policy"`
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

// ensureReplicationRole creates bucketbridge's role for the source bucket, or
// checks the adopted one (docs/ARCHITECTURE.md, The steps). bucketbridge's own role gets the
// trust policy of docs/ARCHITECTURE.md (The documents); an adopted role's trust policy is only checked:
// it must let S3 assume the role, and is never rewritten.
func ensureReplicationRole(ctx context.Context, run *Run) (Result, error) {
	in := input(run)
	arn, name := in.RoleARN(), roleName(run)
	side := run.Replication.Source
	c := func(action string) call { return call{Account: side.AccountID, Action: action, Resource: arn} }
	return withLock(ctx, run, []string{arn}, func() (Result, error) {
		role, err := getRole(ctx, run.Source, name)
		if err != nil {
			return Result{}, classify(err, c("iam:GetRole"))
		}
		facts := run.Facts()
		want := policy.TrustPolicy(in)
		if role == nil {
			if facts.RoleAdopted {
				return Result{}, Permanent(fmt.Sprintf("role %s, named by the replication configuration of source bucket %s, does not exist: restore it, or remove that configuration's rules so that bucketbridge can create its own role", arn, side.Bucket), nil)
			}
			out, err := run.Source.IAM.CreateRole(ctx, &iam.CreateRoleInput{
				RoleName:                 aws.String(name),
				AssumeRolePolicyDocument: aws.String(mustJSON(want)),
				Description:              aws.String("S3 replication role for bucket " + side.Bucket + ", managed by bucketbridge"),
				Tags: []iamtypes.Tag{
					{Key: aws.String(ManagedByTag), Value: aws.String(ManagedByValue)},
					{Key: aws.String(sourceBucketTagKey), Value: aws.String(side.Bucket)},
				},
			})
			var exists *iamtypes.EntityAlreadyExistsException
			switch {
			case errors.As(err, &exists) || errorCode(err) == "EntityAlreadyExists":
				// Made meanwhile, perhaps by our own earlier attempt whose answer
				// was lost: check it like any existing role.
				if role, err = getRole(ctx, run.Source, name); err != nil || role == nil {
					return Result{}, classify(errors.Join(errors.New("role exists but cannot be read"), err), c("iam:GetRole"))
				}
			case err != nil:
				return Result{}, classify(err, c("iam:CreateRole"))
			default:
				at := run.now()
				if out.Role != nil && out.Role.CreateDate != nil {
					at = *out.Role.CreateDate
				}
				run.Learn(func(f *Facts) { f.RoleCreatedAt = &at; f.RoleName = name; f.RoleAdopted = false })
				// Confirm: IAM itself sees a new role at once.
				got, err := getRole(ctx, run.Source, name)
				if err != nil || got == nil {
					return Result{}, fmt.Errorf("confirm role %s: %w", arn, errors.Join(errors.New("not found after creation"), err))
				}
				return Result{Changed: true, After: roleState{ARN: arn, Name: name, Trust: want, CreatedAt: &at}}, nil
			}
		}
		trust, err := policy.DecodeIAM(aws.ToString(role.AssumeRolePolicyDocument))
		if err != nil {
			return Result{}, Permanent(fmt.Sprintf("the trust policy of role %s does not parse; fix it by hand", arn), err)
		}
		state := roleState{ARN: arn, Name: name, Trust: trust, CreatedAt: role.CreateDate}
		if p := aws.ToString(role.Path); p != "" && p != "/" {
			return Result{}, Permanent(fmt.Sprintf("role %s has path %s: bucketbridge names roles as %s in policies, which only matches path /; delete or rename that role", aws.ToString(role.Arn), p, arn), nil)
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
			return Result{Before: state, After: state}, nil
		}
		if facts.RoleCreatedAt == nil && role.CreateDate != nil {
			at := *role.CreateDate
			run.Learn(func(f *Facts) { f.RoleCreatedAt = &at })
		}
		if policy.Equal(trust, want) {
			return Result{Before: state, After: state}, nil
		}
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
	})
}

// readRolePolicies returns a role's inline policies, name → document.
func readRolePolicies(ctx context.Context, acct *Account, role string) (map[string]policy.Document, error) {
	names, err := listRolePolicies(ctx, acct, role)
	if err != nil {
		return nil, err
	}
	out := make(map[string]policy.Document, len(names))
	for _, n := range names {
		doc, err := getRolePolicy(ctx, acct, role, n)
		if err != nil {
			return nil, err
		}
		if doc != nil {
			out[n] = *doc
		}
	}
	return out, nil
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

// putRolePolicy gives the role its inline policy for this destination
// (docs/ARCHITECTURE.md, The documents), within IAM's limit on a role's inline policies.
func putRolePolicy(ctx context.Context, run *Run) (Result, error) {
	in := input(run)
	arn, name := in.RoleARN(), roleName(run)
	side := run.Replication.Source
	c := func(action string) call { return call{Account: side.AccountID, Action: action, Resource: arn} }
	// The deprovisioning of another request from this source bucket may have
	// deleted the shared role since ensure_replication_role ran (it had no
	// inline policy then): create it again.
	role, err := getRole(ctx, run.Source, name)
	if err != nil {
		return Result{}, classify(err, c("iam:GetRole"))
	}
	if role == nil {
		if _, err := ensureReplicationRole(ctx, run); err != nil {
			return Result{}, err
		}
	}
	want := policy.RolePolicy(in, findings(run.Facts()))
	return withLock(ctx, run, []string{arn}, func() (Result, error) {
		current, err := readRolePolicies(ctx, run.Source, name)
		if IsNotFound(err) {
			return Result{}, fmt.Errorf("role %s was deleted while its inline policy was being written; it is created again on the next attempt: %w", arn, err)
		}
		if err != nil {
			return Result{}, classify(err, c("iam:GetRolePolicy"))
		}
		var before *policy.NamedPolicy
		if d, ok := current[want.Name]; ok {
			before = &policy.NamedPolicy{Name: want.Name, Document: d}
			if policy.Equal(d, want.Document) {
				return Result{Before: before, After: before}, nil
			}
		}
		if _, err := policy.PutRolePolicy(current, want); err != nil {
			return Result{}, classify(err, c("iam:PutRolePolicy"))
		}
		if _, err := run.Source.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{
			RoleName: aws.String(name), PolicyName: aws.String(want.Name), PolicyDocument: aws.String(mustJSON(want.Document)),
		}); IsNotFound(err) {
			// Deleted meanwhile, or not yet visible after creation.
			return Result{}, fmt.Errorf("put inline policy %s on %s: the role is not there; retrying: %w", want.Name, arn, err)
		} else if err != nil {
			return Result{}, classify(err, c("iam:PutRolePolicy"))
		}
		got, err := getRolePolicy(ctx, run.Source, name, want.Name)
		if err != nil {
			return Result{}, classify(err, c("iam:GetRolePolicy"))
		}
		if got == nil || !policy.Equal(*got, want.Document) {
			return Result{}, fmt.Errorf("confirm inline policy %s of %s: it reads back differently", want.Name, arn)
		}
		return Result{Changed: true, Before: before, After: want}, nil
	})
}

// deleteRolePolicy removes the role's inline policy for this destination.
func deleteRolePolicy(ctx context.Context, run *Run) (Result, error) {
	in := input(run)
	arn, name := in.RoleARN(), roleName(run)
	side := run.Replication.Source
	policyName := policy.RolePolicyName(run.Replication.Destination.Bucket, run.Replication.Rule.Prefix)
	c := func(action string) call { return call{Account: side.AccountID, Action: action, Resource: arn} }
	return withLock(ctx, run, []string{arn}, func() (Result, error) {
		doc, err := getRolePolicy(ctx, run.Source, name, policyName)
		if err != nil {
			return Result{}, classify(err, c("iam:GetRolePolicy"))
		}
		if doc == nil {
			return Result{}, nil
		}
		before := policy.NamedPolicy{Name: policyName, Document: *doc}
		_, err = run.Source.IAM.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String(policyName)})
		if err != nil && !IsNotFound(err) {
			return Result{}, classify(err, c("iam:DeleteRolePolicy"))
		}
		if got, err := getRolePolicy(ctx, run.Source, name, policyName); err != nil || got != nil {
			return Result{}, fmt.Errorf("confirm deletion of inline policy %s of %s: %w", policyName, arn, errors.Join(errors.New("still there"), err))
		}
		return Result{Changed: true, Before: before}, nil
	})
}

// roleKept says why delete_role left the role in place.
type roleKept struct {
	Role   string   `json:"role"`
	Kept   string   `json:"kept"`
	Inline []string `json:"inline_policies,omitempty"`
}

// deleteRole deletes the replication role when bucketbridge created it and no
// inline policy (another request's, from the same source bucket) remains.
func deleteRole(ctx context.Context, run *Run) (Result, error) {
	in := input(run)
	arn, name := in.RoleARN(), roleName(run)
	side := run.Replication.Source
	if run.Facts().RoleAdopted {
		return Result{Skipped: true, After: roleKept{Role: arn, Kept: "adopted: not created by bucketbridge"}}, nil
	}
	c := func(action string) call { return call{Account: side.AccountID, Action: action, Resource: arn} }
	return withLock(ctx, run, []string{arn}, func() (Result, error) {
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
		names, err := listRolePolicies(ctx, run.Source, name)
		if err != nil {
			return Result{}, classify(err, c("iam:ListRolePolicies"))
		}
		trust, _ := policy.DecodeIAM(aws.ToString(role.AssumeRolePolicyDocument))
		before := roleState{ARN: arn, Name: name, Trust: trust, CreatedAt: role.CreateDate}
		if len(names) > 0 {
			return Result{Before: before, After: roleKept{Role: arn, Kept: "other requests' inline policies remain", Inline: names}}, nil
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
	})
}
