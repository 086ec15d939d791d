package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// realDocuments returns the real-world documents under testdata/real by file name.
func realDocuments(t *testing.T) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "real", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no real documents: %v", err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	return out
}

// genericNorm normalizes a policy document decoded as generic JSON, independently of the
// package's own types: a single statement becomes a list, string-or-list elements become
// sorted lists, condition numbers and booleans become their text. Statement order and
// unknown keys are kept, so two documents normalize alike exactly when AWS reads them alike.
func genericNorm(t *testing.T, data []byte) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	list := func(v any) []string {
		var out []string
		switch v := v.(type) {
		case []any:
			for _, e := range v {
				out = append(out, fmt.Sprint(e))
			}
		default:
			out = []string{fmt.Sprint(v)}
		}
		slices.Sort(out)
		return out
	}
	var stmts []any
	switch s := doc["Statement"].(type) {
	case []any:
		stmts = s
	case map[string]any:
		stmts = []any{s}
	}
	for _, s := range stmts {
		st := s.(map[string]any)
		for _, k := range []string{"Action", "NotAction", "Resource", "NotResource"} {
			if v, ok := st[k]; ok {
				st[k] = list(v)
			}
		}
		for _, k := range []string{"Principal", "NotPrincipal"} {
			if m, ok := st[k].(map[string]any); ok {
				for typ, v := range m {
					m[typ] = list(v)
				}
			}
		}
		if c, ok := st["Condition"].(map[string]any); ok {
			for _, keys := range c {
				for k, v := range keys.(map[string]any) {
					keys.(map[string]any)[k] = list(v)
				}
			}
		}
	}
	doc["Statement"] = stmts
	return doc
}

func TestRealDocumentsRoundTrip(t *testing.T) {
	t.Parallel()
	for name, data := range realDocuments(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			doc, err := Parse(data)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			out, err := json.Marshal(doc)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if diff := cmp.Diff(genericNorm(t, data), genericNorm(t, out)); diff != "" {
				t.Errorf("re-serialized document differs from the original (-orig +out):\n%s", diff)
			}
			again, err := Parse(out)
			if err != nil {
				t.Fatalf("Parse(Marshal): %v", err)
			}
			if !Equal(doc, again) {
				t.Errorf("Equal(doc, Parse(Marshal(doc))) = false\n%s", out)
			}
		})
	}
}

// TestRealDocumentsKeepForeignStatements adds bucketbridge's statements to every real document
// and takes them out again, as provisioning and removal do: the foreign statements come out
// unchanged and in order.
func TestRealDocumentsKeepForeignStatements(t *testing.T) {
	t.Parallel()
	in := testInput()
	for name, data := range realDocuments(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			doc, err := Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			g := Grant{Bucket: in.Destination.Bucket, Region: in.Destination.Region, Roles: []string{in.RoleARN()}}
			merged := syncBoth(t, doc, g)
			if got, want := len(merged.Statement), len(doc.Statement)+3; got != want {
				t.Fatalf("merged has %d statements, want %d", got, want)
			}
			mergedJSON, _ := json.Marshal(Document{Version: merged.Version, ID: merged.ID, Statement: merged.Statement[:len(doc.Statement)], extra: merged.extra})
			if diff := cmp.Diff(genericNorm(t, data), genericNorm(t, mergedJSON)); diff != "" {
				t.Errorf("foreign statements changed by merge (-orig +merged):\n%s", diff)
			}
			g.Roles = nil
			out, _ := json.Marshal(syncBoth(t, merged, g))
			if diff := cmp.Diff(genericNorm(t, data), genericNorm(t, out)); diff != "" {
				t.Errorf("remove(merge(doc)) differs from doc (-orig +out):\n%s", diff)
			}
		})
	}
}

// syncBoth recomputes bucketbridge's bucket-policy and key-policy statements in one document.
func syncBoth(t *testing.T, doc Document, g Grant) Document {
	t.Helper()
	b, err := SyncBucketPolicy(doc, g)
	if err != nil {
		t.Fatal(err)
	}
	k, err := SyncDestinationKeyPolicy(b.Document, g)
	if err != nil {
		t.Fatal(err)
	}
	return k.Document
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, doc, wantPath string
	}{
		{"malformed", `{"Version":`, ""},
		{"not an object", `["Statement"]`, ""},
		{"statement is a string", `{"Statement":"allow all"}`, "Statement"},
		{"statement list holds a number", `{"Statement":[1]}`, "Statement[0]"},
		{"missing effect", `{"Statement":[{"Action":"s3:*"}]}`, "Statement[0]"},
		{"bad effect", `{"Statement":[{"Effect":"allow","Action":"s3:*"}]}`, "Statement[0].Effect"},
		{"string principal not star", `{"Statement":[{"Effect":"Allow","Principal":"arn:aws:iam::111122223333:root"}]}`, "Statement[0].Principal"},
		{"principal list", `{"Statement":[{"Effect":"Allow","Principal":["*"]}]}`, "Statement[0].Principal"},
		{"action number", `{"Statement":[{"Effect":"Allow","Action":5}]}`, "Statement[0].Action"},
		{"action list of objects", `{"Statement":[{"Effect":"Allow","Action":[{}]}]}`, "Statement[0].Action[0]"},
		{"principal value object", `{"Statement":[{"Effect":"Allow","Principal":{"AWS":{"x":1}}}]}`, "Statement[0].Principal.AWS"},
		{"condition not object", `{"Statement":[{"Effect":"Allow","Condition":"x"}]}`, "Statement[0].Condition"},
		{"condition value object", `{"Statement":[{"Effect":"Allow","Condition":{"StringEquals":{"k":{"a":1}}}}]}`, "Statement[0].Condition.StringEquals.k"},
		{"version number", `{"Version":2012,"Statement":[]}`, "Version"},
		{"trailing garbage", `{"Statement":[]} x`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tt.doc))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%s) error = %v, want a *ParseError", tt.doc, err)
			}
			if pe.Path != tt.wantPath {
				t.Errorf("error path = %q, want %q (%v)", pe.Path, tt.wantPath, err)
			}
		})
	}
}

func TestParseIsCaseSensitive(t *testing.T) {
	t.Parallel()
	// encoding/json would match "action" to Action; IAM would not, so neither do we.
	doc, err := Parse([]byte(`{"Statement":[{"Effect":"Allow","action":"s3:*","Action":"s3:GetObject"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Values{"s3:GetObject"}, doc.Statement[0].Action); diff != "" {
		t.Errorf("Action (-want +got):\n%s", diff)
	}
	out, _ := json.Marshal(doc)
	if want := `{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","action":"s3:*"}]}`; string(out) != want {
		t.Errorf("Marshal = %s, want %s", out, want)
	}
}

func TestMarshalShapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		doc  Document
		want string
	}{
		{"empty", Document{}, `{"Statement":[]}`},
		{"single values become strings, lists stay lists", Document{Version: Version2012, ID: "x", Statement: []Statement{{
			Sid: "A", Effect: "Deny", NotPrincipal: &Principal{IDs: map[string]Values{"Service": {"s"}, "AWS": {"b", "a"}}},
			NotAction: Values{"s3:*"}, NotResource: Values{"r1", "r2"},
			Condition: Condition{"Bool": {"aws:SecureTransport": {"false"}}},
		}}}, `{"Version":"2012-10-17","Id":"x","Statement":[{"Sid":"A","Effect":"Deny","NotPrincipal":{"AWS":["b","a"],"Service":"s"},"NotAction":"s3:*","NotResource":["r1","r2"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}`},
		{"star principal", Document{Statement: []Statement{{Effect: "Allow", Principal: &Principal{All: true}}}}, `{"Statement":[{"Effect":"Allow","Principal":"*"}]}`},
		{"AWS star is not All", Document{Statement: []Statement{{Effect: "Allow", Principal: &Principal{IDs: map[string]Values{"AWS": {"*"}}}}}}, `{"Statement":[{"Effect":"Allow","Principal":{"AWS":"*"}}]}`},
		{"empty principals, values and conditions", Document{Statement: []Statement{
			{Effect: "Allow", Principal: &Principal{}, NotPrincipal: &Principal{IDs: map[string]Values{"AWS": nil, "Service": {}}}},
			{Effect: "Deny", Condition: Condition{"Null": nil, "Bool": {}}},
			{Effect: "Deny", Condition: Condition{}},
		}}, `{"Statement":[{"Effect":"Allow","Principal":{},"NotPrincipal":{"AWS":[],"Service":[]}},{"Effect":"Deny","Condition":{"Bool":{},"Null":null}},{"Effect":"Deny","Condition":{}}]}`},
		{"strings JSON must escape", Document{Statement: []Statement{{Effect: "Allow", Action: Values{"a<b>&c", "\"q\" \\ \x01\t é \u2028"}}}},
			`{"Statement":[{"Effect":"Allow","Action":["a\u003cb\u003e\u0026c","\"q\" \\ \u0001\t é \u2028"]}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := json.Marshal(tt.doc)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("Marshal =\n%s\nwant\n%s", got, tt.want)
			}
			if n := PolicyChars(tt.doc); n != utf8.RuneCountInString(tt.want) {
				t.Errorf("PolicyChars = %d, want %d, the characters of what is sent", n, utf8.RuneCountInString(tt.want))
			}
		})
	}
}

func TestEqual(t *testing.T) {
	t.Parallel()
	const base = `{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Principal":{"AWS":["r1","r2"]},"Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::b/*","Condition":{"StringLike":{"k":["v1","v2"]}}},{"Sid":"B","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"*"}]}`
	tests := []struct {
		name  string
		other string
		want  bool
	}{
		{"identical", base, true},
		{"string vs one-element list, reordered lists, duplicates, action case", `{"Version":"2012-10-17","Statement":[{"Sid":"B","Effect":"Deny","Principal":"*","Action":["s3:*"],"Resource":["*","*"]},{"Sid":"A","Effect":"Allow","Principal":{"AWS":["r2","r1","r1"]},"Action":["S3:PUTOBJECT","s3:GetObject"],"Resource":["arn:aws:s3:::b/*"],"Condition":{"StringLike":{"k":["v2","v1"]}}}]}`, true},
		{"principal removed", strings.Replace(base, `["r1","r2"]`, `"r1"`, 1), false},
		{"AWS star is not star", strings.Replace(base, `"Principal":"*"`, `"Principal":{"AWS":"*"}`, 1), false},
		{"effect differs", strings.Replace(base, `"Deny"`, `"Allow"`, 1), false},
		{"resource case matters", strings.Replace(base, `arn:aws:s3:::b/*`, `arn:aws:s3:::B/*`, 1), false},
		{"condition value differs", strings.Replace(base, `"v2"`, `"v3"`, 1), false},
		{"sid differs", strings.Replace(base, `"Sid":"B"`, `"Sid":"C"`, 1), false},
		{"version differs", strings.Replace(base, `2012-10-17`, `2008-10-17`, 1), false},
		{"statement dropped", `{"Version":"2012-10-17","Statement":[{"Sid":"B","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"*"}]}`, false},
		{"unknown key added", strings.Replace(base, `"Sid":"B",`, `"Sid":"B","Extra":1,`, 1), false},
		{"Action vs NotAction", strings.Replace(base, `"Action":"s3:*"`, `"NotAction":"s3:*"`, 1), false},
	}
	a := mustParse(t, base)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := mustParse(t, tt.other)
			if got := Equal(a, b); got != tt.want {
				t.Errorf("Equal = %v, want %v", got, tt.want)
			}
			if got := Equal(b, a); got != tt.want {
				t.Errorf("Equal (swapped) = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDecodeIAM(t *testing.T) {
	t.Parallel()
	// What GetRolePolicy returns: RFC 3986 percent-encoding of the document.
	plain := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/a+b c*"}]}`
	encoded := strings.ReplaceAll(url.QueryEscape(plain), "+", "%20")
	for name, s := range map[string]string{"encoded": encoded, "plain": plain, "indented plain": "\n  " + plain} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			doc, err := DecodeIAM(s)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(Values{"arn:aws:s3:::b/a+b c*"}, doc.Statement[0].Resource); diff != "" {
				t.Errorf("Resource (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := DecodeIAM("%7B%ZZ"); err == nil {
		t.Error("DecodeIAM(bad escape) = nil error")
	}
}

func mustParse(t testing.TB, s string) Document {
	t.Helper()
	d, err := Parse([]byte(s))
	if err != nil {
		t.Fatalf("Parse(%s): %v", s, err)
	}
	return d
}
