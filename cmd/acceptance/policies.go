package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/bucketbridge/bucketbridge/internal/policy"
)

// The provisioner roles the run creates carry exactly the policies
// docs/PROVISIONER.md documents, read from that file and filled in, so that
// the run tests the documentation too: a permission it lacks fails the run.

// provisionerDocs are the documented policies, with placeholders.
type provisionerDocs struct {
	Trust, Source, Boundary, Destination string
}

var jsonBlock = regexp.MustCompile("(?s)```json\n(.*?)```")

// readProvisionerDocs reads the trust policy, the source and destination
// permissions and the permissions boundary from docs/PROVISIONER.md: the
// first JSON block after the heading of each, the boundary being the second
// block of the source account's section.
func readProvisionerDocs(path string) (provisionerDocs, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return provisionerDocs{}, fmt.Errorf("read the provisioner's policies: %w", err)
	}
	text := string(b)
	section := func(heading string) ([]string, error) {
		i := strings.Index(text, "\n## "+heading)
		if i < 0 {
			return nil, fmt.Errorf("%s has no section %q", path, heading)
		}
		rest := text[i+1:]
		if j := strings.Index(rest[3:], "\n## "); j >= 0 {
			rest = rest[:j+3]
		}
		var blocks []string
		for _, m := range jsonBlock.FindAllStringSubmatch(rest, -1) {
			blocks = append(blocks, m[1])
		}
		if len(blocks) == 0 {
			return nil, fmt.Errorf("section %q of %s has no JSON policy", heading, path)
		}
		return blocks, nil
	}
	trust, err := section("Trust policy (every account)")
	if err != nil {
		return provisionerDocs{}, err
	}
	source, err := section("Permissions in a source account (A)")
	if err != nil {
		return provisionerDocs{}, err
	}
	if len(source) < 2 {
		return provisionerDocs{}, fmt.Errorf("section %q of %s has no permissions boundary", "Permissions in a source account (A)", path)
	}
	dest, err := section("Permissions in a destination account (B)")
	if err != nil {
		return provisionerDocs{}, err
	}
	return provisionerDocs{Trust: trust[0], Source: source[0], Boundary: source[1], Destination: dest[0]}, nil
}

// fill replaces the placeholders of a documented policy and checks that
// the result is a policy.
func fill(doc string, replacements map[string]string) (string, error) {
	for from, to := range replacements {
		doc = strings.ReplaceAll(doc, from, to)
	}
	if _, err := policy.Parse([]byte(doc)); err != nil {
		return "", fmt.Errorf("a documented policy does not parse once filled in: %w", err)
	}
	return doc, nil
}

// provisionerPolicies are the documented policies for one run.
type provisionerPolicies struct {
	Trust, Source, Boundary, Destination string
}

// provisionerPoliciesFor fills the documented policies in for accounts a
// and b: the roles trust the service's account (svc) with externalID, and
// the source account's role may create replication roles only with the
// boundary policy named boundary.
func provisionerPoliciesFor(d provisionerDocs, svc, a, b, externalID, boundary string) (provisionerPolicies, error) {
	var out provisionerPolicies
	var err error
	// The documented principal is the service's role; the run's service is
	// whatever the source profile is, so the roles trust its account, which
	// lets every principal there that may sts:AssumeRole them.
	if out.Trust, err = fill(d.Trust, map[string]string{"arn:aws:iam::SVC:role/bucketbridge": "arn:aws:iam::" + svc + ":root", "<BB_EXTERNAL_ID>": externalID}); err != nil {
		return out, err
	}
	if out.Source, err = fill(d.Source, map[string]string{":A:": ":" + a + ":", "<BB_ROLE_PERMISSIONS_BOUNDARY>": boundary}); err != nil {
		return out, err
	}
	if out.Boundary, err = fill(d.Boundary, nil); err != nil {
		return out, err
	}
	if out.Destination, err = fill(d.Destination, map[string]string{":B:": ":" + b + ":"}); err != nil {
		return out, err
	}
	for name, doc := range map[string]string{"trust": out.Trust, "source": out.Source, "destination": out.Destination} {
		if strings.Contains(doc, ":SVC:") || strings.Contains(doc, ":A:") || strings.Contains(doc, ":B:") || strings.Contains(doc, "<BB_") {
			return out, fmt.Errorf("the documented %s policy keeps a placeholder once filled in", name)
		}
	}
	return out, nil
}
