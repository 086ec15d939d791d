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
// A role principal must name an existing role; byOtherService says the
// document is checked by S3 or KMS, which see a new role only once it is
// visible (RoleInvisibleFor).
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
	m := roleARNRE.FindStringSubmatch(id)
	if m == nil {
		return false
	}
	a, ok := c.accounts[m[1]]
	if !ok {
		return false
	}
	r, ok := a.roles[m[2]]
	if !ok {
		return false
	}
	return !byOtherService || !c.now().Before(r.visibleAt)
}

// roleVisibleLocked reports whether S3 and KMS see the role named by arn.
func (c *Cloud) roleVisibleLocked(arn string) (*role, bool) {
	m := roleARNRE.FindStringSubmatch(arn)
	if m == nil {
		return nil, false
	}
	a, ok := c.accounts[m[1]]
	if !ok {
		return nil, false
	}
	r, ok := a.roles[m[2]]
	if !ok || c.now().Before(r.visibleAt) {
		return r, false
	}
	return r, true
}
