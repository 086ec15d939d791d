package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"testing"
)

// The fuzz targets run as ordinary tests over their seeds (f.Add and testdata/fuzz/<target>),
// and with go test -fuzz=<target> they search for inputs that break the laws below.

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	return b
}

// FuzzParseRoundTrip: parse → serialize → parse gives the same document, serializing is
// stable, a document writes itself exactly as encoding/json sends it (so the size checks
// count what AWS receives), and the IAM URL-encoding decodes to the same document.
func FuzzParseRoundTrip(f *testing.F) {
	f.Add([]byte(`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}}`))
	f.Add([]byte(`{"Statement":[{"Effect":"Deny","NotPrincipal":{"AWS":["a","b"]},"NotAction":[],"Condition":{"NumericLessThan":{"s3:TlsVersion":1.2},"Bool":{"k":false}}}],"X":null}`))
	f.Add([]byte(`{"Statement":[]}`))
	f.Add([]byte(`{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringLike":{"aws:UserAgent":["a<b>&\"c\u2028\u0001é","","x<y","z&","w>"]}},"X":["<&>"," \u2029 "]}],"Y":{"z":"<"}}`))
	f.Add([]byte("{\"Statement\":[{\"Effect\":\"Allow\",\"Sid\":\"s\",\"Y\":\"\u2028\"}],\"X\":\"a\u2029b\"}")) // raw U+2028 and U+2029
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse error %v is not a *ParseError", err)
			}
			return
		}
		out := mustMarshal(t, d)
		if own, err := d.MarshalJSON(); err != nil || !bytes.Equal(own, out) {
			t.Fatalf("the document writes itself otherwise than encoding/json sends it (%v):\n%s\n%s", err, own, out)
		}
		d2, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Marshal(doc)) = %v\n%s", err, out)
		}
		if !Equal(d, d) || !Equal(d, d2) || !Equal(d2, d) {
			t.Fatalf("parse → serialize → parse changed the document:\n in %s\nout %s", data, out)
		}
		if out2 := mustMarshal(t, d2); !bytes.Equal(out, out2) {
			t.Fatalf("serialization not stable:\n%s\n%s", out, out2)
		}
		d3, err := DecodeIAM(url.PathEscape(string(data)))
		if err != nil || !Equal(d, d3) {
			t.Fatalf("DecodeIAM(url-encoded doc) = %v, equal %v", err, Equal(d, d3))
		}
	})
}

// FuzzReplicationLaws checks the replication merge: idempotent, other rules untouched and in
// order, our priority above every other, remove(merge(c, x), x) = c, and the errors that stop
// a merge are the documented ones.
func FuzzReplicationLaws(f *testing.F) {
	f.Add([]byte(`{"Role":"`+roleA+`","Rules":[{"ID":"theirs","Priority":4,"Status":"Enabled","Filter":{"Prefix":""},"Destination":{"Bucket":"arn:aws:s3:::d"},"Odd":[1]}]}`), "req-1", roleA)
	f.Add([]byte(`{"Role":"`+roleB+`","Rules":[{"ID":"theirs","Filter":{}}]}`), "req-1", roleA)
	f.Add([]byte(`{"Rules":[{"ID":"v1","Prefix":"logs/"}]}`), "req-1", roleA)
	f.Add([]byte(`{}`), "req-2", roleA)
	f.Fuzz(func(t *testing.T, data []byte, id, role string) {
		c, err := ParseReplicationConfiguration(data)
		if err != nil || role == "" {
			return
		}
		in := testInput()
		in.RequestID = id
		rule := ReplicationRuleFor(in, Findings{})
		c.Rules = slices.DeleteFunc(c.Rules, func(r ReplicationRule) bool { return r.ID == rule.ID })
		before := mustMarshal(t, c)

		merged, err := MergeReplicationRule(&c, role, rule)
		if !bytes.Equal(before, mustMarshal(t, c)) {
			t.Fatal("merge modified its input")
		}
		var rc *RoleConflictError
		switch {
		case errors.As(err, &rc):
			if c.Role == role || len(c.Rules) == 0 || rc.Existing != c.Role {
				t.Fatalf("role conflict %v for configuration role %q", err, c.Role)
			}
			return
		case errors.Is(err, ErrLegacyReplicationSchema), errors.Is(err, ErrLimitExceeded):
			return
		case err != nil:
			t.Fatalf("unexpected error %v", err)
		}
		if merged.Role != role {
			t.Fatalf("Role = %q, want %q", merged.Role, role)
		}
		again, err := MergeReplicationRule(&merged, role, rule)
		if err != nil || !bytes.Equal(mustMarshal(t, merged), mustMarshal(t, again)) {
			t.Fatalf("merge twice != merge once (%v)", err)
		}
		var others []ReplicationRule
		var mine *ReplicationRule
		for i, r := range merged.Rules {
			if r.ID == rule.ID {
				mine = &merged.Rules[i]
			} else {
				others = append(others, r)
			}
		}
		if mine == nil {
			t.Fatal("our rule is missing")
		}
		if a, b := mustMarshal(t, others), mustMarshal(t, c.Rules); len(c.Rules) > 0 && !bytes.Equal(a, b) {
			t.Fatalf("other rules changed:\n%s\n%s", b, a)
		}
		for _, r := range others {
			if r.Priority != nil && *r.Priority >= *mine.Priority {
				t.Fatalf("our priority %d is not above %s's %d", *mine.Priority, r.ID, *r.Priority)
			}
		}
		back, del := RemoveReplicationRule(merged, rule.ID)
		want := c
		want.Role = role
		switch {
		case len(c.Rules) == 0 && !del:
			t.Fatal("removing our only rule did not say delete the configuration")
		case len(c.Rules) > 0 && (del || !ReplicationEqual(back, want)):
			t.Fatalf("remove(merge(c, x), x) != c:\n%s\n%s", mustMarshal(t, want), mustMarshal(t, back))
		}
		// Two of our rules merged in either order hold the same rules, priorities aside.
		in.RequestID = id + "-2"
		rule2 := ReplicationRuleFor(in, Findings{})
		ab, err1 := MergeReplicationRule(&merged, role, rule2)
		m2, err2 := MergeReplicationRule(&c, role, rule2)
		if err1 != nil || err2 != nil {
			return // the limit, once more
		}
		ba, err := MergeReplicationRule(&m2, role, rule)
		if err != nil {
			t.Fatal(err)
		}
		strip := func(c ReplicationConfiguration) ReplicationConfiguration {
			c = cloneConfig(c)
			for i := range c.Rules {
				if IsOwnedRuleID(c.Rules[i].ID) && (c.Rules[i].ID == rule.ID || c.Rules[i].ID == rule2.ID) {
					c.Rules[i].Priority = nil
				}
			}
			return c
		}
		if !ReplicationEqual(strip(ab), strip(ba)) {
			t.Fatalf("x1 then x2 != x2 then x1:\n%s\n%s", mustMarshal(t, ab), mustMarshal(t, ba))
		}
	})
}
