package policy

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseShapes(t *testing.T) {
	t.Parallel()
	doc, err := Parse([]byte(`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":["a","b"],"Custom":{"x":1}}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Statement{Effect: "Allow", Principal: &Principal{All: true}, Action: Values{"s3:GetObject"}, Resource: Values{"a", "b"}}
	if diff := cmp.Diff(want, doc.Statement[0], cmp.AllowUnexported(Statement{}), cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".extra" }, cmp.Ignore())); diff != "" {
		t.Errorf("statement (-want +got):\n%s", diff)
	}
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":["a","b"],"Custom":{"x":1}}]}`; got != want {
		t.Errorf("marshal:\n got %s\nwant %s", got, want)
	}
}
