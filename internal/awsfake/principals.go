package awsfake

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/bucketbridge/bucketbridge/internal/policy"
)

var (
	accountIDRE = regexp.MustCompile(`^\d{12}$`)
	rootARNRE   = regexp.MustCompile(`^arn:aws:iam::\d{12}:root$`)
	// Users and assumed-role sessions are not modelled: any well-formed
	// ARN of theirs is accepted.
	otherPrincipalRE = regexp.MustCompile(`^arn:aws:(iam::\d{12}:user/|sts::\d{12}:assumed-role/)[\w+=,.@/-]+$`)
)

// invalidPrincipalLocked returns the first principal of d that AWS would
// reject as invalid, formatted as AWS quotes it (`"AWS":"arn:..."`), or "".
// It is the one place every put of a document with principals (trust, key
// and bucket policies) checks them. A role principal must name an existing
// role by its ARN, path included; byOtherService says the document is checked
// by S3 or KMS, which see a new role only once it is visible
// (RoleInvisibleFor). The unique ID of a deleted role (AROA…, what DeleteRole
// leaves in every policy) is never valid: AWS refuses it the same way.
func (c *Cloud) invalidPrincipalLocked(d policy.Document, byOtherService bool) string {
	for _, st := range d.Statement {
		for _, p := range []*policy.Principal{st.Principal, st.NotPrincipal} {
			if p == nil || p.All {
				continue
			}
			for typ, ids := range p.IDs {
				for _, id := range ids {
					if !c.validPrincipalLocked(typ, id, byOtherService) {
						return fmt.Sprintf("%q:%q", typ, id)
					}
				}
			}
		}
	}
	return ""
}

func (c *Cloud) validPrincipalLocked(typ, id string, byOtherService bool) bool {
	switch typ {
	case "Service":
		return strings.HasSuffix(id, ".amazonaws.com") || strings.HasSuffix(id, ".amazonaws.com.cn")
	case "Federated", "CanonicalUser":
		return id != ""
	case "AWS":
	default:
		return false
	}
	switch {
	case id == "*", accountIDRE.MatchString(id), rootARNRE.MatchString(id), otherPrincipalRE.MatchString(id):
		return true
	}
	// A role must exist, at the path its ARN names. Anything else, above all
	// the unique ID (AROA…) that a deleted role's ARN turns into, is invalid.
	r := c.roleByARNLocked(id)
	return r != nil && (!byOtherService || !c.now().Before(r.visibleAt))
}

// roleVisibleLocked returns the role named by arn (path included) and
// whether S3 and KMS see it yet.
func (c *Cloud) roleVisibleLocked(arn string) (*role, bool) {
	r := c.roleByARNLocked(arn)
	if r == nil {
		return nil, false
	}
	return r, !c.now().Before(r.visibleAt)
}
