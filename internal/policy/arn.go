package policy

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// ErrInvalidRoleARN is matched by errors.Is for a string [ParseRoleARN] cannot read as the ARN
// of an IAM role.
var ErrInvalidRoleARN = errors.New("not an IAM role ARN")

// RoleRef is an IAM role as its ARN names it: arn:<partition>:iam::<account>:role<path><name>.
// A role's path is part of its ARN, so a policy that names the role must name it with its
// path: roles the S3 console creates live under /service-role/, and an ARN without that path
// names no role at all.
// See https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-arns
type RoleRef struct {
	// Partition is "aws", "aws-cn" or "aws-us-gov".
	Partition string
	// AccountID is the 12-digit account the role belongs to.
	AccountID string
	// Path is "/" or a path that starts and ends with "/", such as "/service-role/".
	Path string
	// Name is the role's name, unique in its account whatever its path.
	Name string
}

var (
	partitionRE = regexp.MustCompile(`^aws(-[a-z]+)*$`)
	digits12RE  = regexp.MustCompile(`^\d{12}$`)
	// IAM's path pattern: "/" alone, or "/" printable ASCII "/" (CreateRole, Path).
	// See https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html
	iamPathRE = regexp.MustCompile(`^(/|/[\x21-\x7E]+/)$`)
	iamNameRE = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)
)

// maxIAMPathLen is the longest path IAM accepts (CreateRole, Path).
const maxIAMPathLen = 512

// ParseRoleARN reads a role ARN, path included. It fails with an error matching
// [ErrInvalidRoleARN] for anything else: another resource type, a malformed account, a bad
// path or name, or a role's unique ID (AROA…), which is what AWS shows in place of an ARN once
// the role is deleted.
func ParseRoleARN(arn string) (RoleRef, error) {
	fail := func(why string) (RoleRef, error) {
		return RoleRef{}, fmt.Errorf("%w: %q: %s", ErrInvalidRoleARN, arn, why)
	}
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" {
		return fail("not an ARN")
	}
	if !partitionRE.MatchString(parts[1]) {
		return fail("unknown partition")
	}
	if parts[2] != "iam" || parts[3] != "" {
		return fail("not an IAM ARN")
	}
	if !digits12RE.MatchString(parts[4]) {
		return fail("the account is not 12 digits")
	}
	rest, ok := strings.CutPrefix(parts[5], "role/")
	if !ok {
		return fail("not a role")
	}
	i := strings.LastIndexByte(rest, '/')
	path, name := "/"+rest[:i+1], rest[i+1:]
	if i < 0 {
		path = "/"
	}
	if len(path) > maxIAMPathLen || !iamPathRE.MatchString(path) {
		return fail("invalid path")
	}
	if !iamNameRE.MatchString(name) {
		return fail("invalid role name")
	}
	return RoleRef{Partition: parts[1], AccountID: parts[4], Path: path, Name: name}, nil
}

// ARN returns the role's ARN, path included.
func (r RoleRef) ARN() string {
	path := r.Path
	if path == "" {
		path = "/"
	}
	return "arn:" + orAWS(r.Partition) + ":iam::" + r.AccountID + ":role" + path + r.Name
}

// uniqueIDRE matches the unique ID AWS shows in a policy in place of the ARN of a role (AROA)
// or user (AIDA) that has been deleted: the prefix and 16 or 17 upper-case letters and digits.
var uniqueIDRE = regexp.MustCompile(`^(AROA|AIDA)[A-Z0-9]{16,17}$`)

// IsUniqueID reports whether a principal is the unique ID of an IAM role (AROA…) or user
// (AIDA…) rather than an ARN. AWS stores a role or user principal by its unique ID and shows
// that ID in place of the ARN once the role or user is deleted; the ID never matches anyone
// again (a re-created role gets a new one), and S3 and KMS refuse to save a policy that
// contains one ("Invalid principal in policy").
// See https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html#principal-roles
// and https://docs.aws.amazon.com/AmazonS3/latest/userguide/s3-bucket-user-policy-specifying-principal-intro.html
func IsUniqueID(principal string) bool { return uniqueIDRE.MatchString(principal) }
