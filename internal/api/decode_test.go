package api

import (
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The decoder works on any tagged struct, so these types hold every shape a
// request body may take: embedding, nesting, pointers, lists, maps, free
// JSON, ",string", a type that reads its own JSON, shadowed names.
type (
	testInner struct {
		Name  string `json:"name"`
		Count int8   `json:"count"`
	}
	testEmbedded struct {
		Region string `json:"region"`
		Shadow string `json:"shadow"`
	}
	testEmbeddedToo struct {
		Clash string
	}
	testEmbeddedThree struct {
		Clash string
	}
	testBody struct {
		testEmbedded
		testEmbeddedToo
		testEmbeddedThree
		Shadow   bool                 `json:"shadow"`
		Inner    testInner            `json:"inner"`
		Ptr      *testInner           `json:"ptr"`
		List     []testInner          `json:"list"`
		Labels   map[string]testInner `json:"labels"`
		Free     any                  `json:"free"`
		Quoted   int                  `json:"quoted,string"`
		When     time.Time            `json:"when"`
		Raw      json.RawMessage      `json:"raw"`
		DryRun   bool                 `json:"dry_run"`
		Untagged string
		Skipped  string `json:"-"`
		private  string //nolint:unused // proves unexported fields are unknown
	}
)

func decodeString(t *testing.T, contentType, body string) (testBody, *problem) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	r.Header.Set("Content-Type", contentType)
	var v testBody
	err := decodeJSON(httptest.NewRecorder(), r, &v)
	if err == nil {
		return v, nil
	}
	var p *problem
	if !errors.As(err, &p) {
		t.Fatalf("decodeJSON returned %T %v, want a problem", err, err)
	}
	return v, p
}

func TestDecodeAcceptsEveryShapeEncodingJSONReads(t *testing.T) {
	t.Parallel()
	body := `{"region":"r","shadow":true,"inner":{"name":"n","count":-128},"ptr":{"name":"p"},
		"list":[{"name":"a"},{"count":127}],"labels":{"x":{"name":"y"},"X":{"name":"z"}},
		"free":{"a":[1,{"b":null}],"A":"\ud83d\ude00"},"quoted":"42","when":"2024-01-02T03:04:05Z",
		"raw":{"anything":[true]},"dry_run":false,"Untagged":"u","inner":null}`
	_, p := decodeString(t, "application/json", strings.Replace(body, `,"inner":null`, "", 1))
	if p != nil {
		t.Fatalf("refused a valid body: %+v", p)
	}
	got, p := decodeString(t, "application/json; charset=UTF-8", `{"region":"r","shadow":true,"quoted":"7","ptr":null,"free":"caf\u00e9 ☕"}`)
	if p != nil {
		t.Fatalf("refused a valid body: %+v", p)
	}
	want := testBody{testEmbedded: testEmbedded{Region: "r"}, Shadow: true, Quoted: 7, Free: "café ☕"}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(testBody{})); diff != "" {
		t.Errorf("decoded (-want +got):\n%s", diff)
	}
}

func TestDecodeRefusesWhatEncodingJSONWouldGuess(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, contentType, body string
		status                  int
		field                   string // "" for a problem with the whole body
	}{
		{"duplicate key", "", `{"region":"\u0000","region":"ok"}`, 400, "region"},
		{"duplicate key spelled with an escape", "", `{"region":"a","regio\u006e":"b"}`, 400, "region"},
		{"duplicate nested key", "", `{"inner":{"name":"a","name":"b"}}`, 400, "inner.name"},
		{"duplicate key in a list", "", `{"list":[{},{"count":1,"count":2}]}`, 400, "list[1].count"},
		{"duplicate key in free JSON", "", `{"free":{"a":{"b":1,"b":2}}}`, 400, "free.a.b"},
		{"duplicate key in raw JSON", "", `{"raw":{"k":1,"k":2}}`, 400, "raw.k"},
		{"duplicate map key", "", `{"labels":{"x":{},"x":{}}}`, 400, "labels.x"},
		{"upper case", "", `{"REGION":"r"}`, 400, "REGION"},
		{"upper case with underscore", "", `{"DRY_RUN":true}`, 400, "DRY_RUN"},
		{"Kelvin sign folds to k", "", `{"inner":{"n\u212Ame":"x"}}`, 400, "inner.n\u212Ame"},
		{"long s folds to s", "", `{"\u017Fhadow":true}`, 400, "\u017Fhadow"},
		{"Go field name of a tagged field", "", `{"Region":"r"}`, 400, "Region"},
		{"unknown field", "", `{"extra":1}`, 400, "extra"},
		{"nested unknown field", "", `{"inner":{"extra":1}}`, 400, "inner.extra"},
		{"unknown field behind a pointer", "", `{"ptr":{"extra":1}}`, 400, "ptr.extra"},
		{"unknown field in a list", "", `{"list":[{"extra":1}]}`, 400, "list[0].extra"},
		{"skipped field", "", `{"Skipped":"x"}`, 400, "Skipped"},
		{"unexported field", "", `{"private":"x"}`, 400, "private"},
		{"embedded struct's own name", "", `{"testEmbedded":{}}`, 400, "testEmbedded"},
		{"ambiguous promoted name", "", `{"Clash":"x"}`, 400, "Clash"},
		{"invalid UTF-8 in a value", "", "{\"region\":\"a\xffb\"}", 400, "region"},
		{"invalid UTF-8 deep inside", "", "{\"free\":[\"ok\",{\"k\":\"\xc3\"}]}", 400, "free[1].k"},
		{"invalid UTF-8 in a key", "", "{\"inner\":{\"na\xe9me\":\"x\"}}", 400, "inner.na\ufffdme"},
		{"lone high surrogate", "", `{"region":"\ud800"}`, 400, "region"},
		{"lone low surrogate", "", `{"region":"x\udc00"}`, 400, "region"},
		{"reversed surrogates", "", `{"region":"\ude00\ud83d"}`, 400, "region"},
		{"high surrogate then a letter", "", `{"region":"\ud83d\u0041"}`, 400, "region"},
		{"string for a number", "", `{"inner":{"count":"1"}}`, 400, "inner.count"},
		{"number out of range", "", `{"inner":{"count":128}}`, 400, "inner.count"},
		{"fraction for a whole number", "", `{"inner":{"count":1.5}}`, 400, "inner.count"},
		{"number for a string", "", `{"region":1}`, 400, "region"},
		{"object for a bool", "", `{"shadow":{}}`, 400, "shadow"},
		{"array for an object", "", `{"inner":[]}`, 400, "inner"},
		{"object for a list", "", `{"list":{}}`, 400, "list"},
		{"number for time", "", `{"when":12}`, 400, "when"},
		{"quoted field unquoted", "", `{"quoted":42}`, 400, "quoted"},
		{"quoted field holding a word", "", `{"quoted":"many"}`, 400, "quoted"},
		{"nesting too deep", "", `{"free":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, 400, "free" + strings.Repeat("[0]", 32)},
		{"utf-16", "application/json; charset=utf-16", `{}`, 415, ""},
		{"latin-1", "application/json;charset=ISO-8859-1", `{}`, 415, ""},
		{"two charsets", "application/json; charset=utf-8; charset=utf-16", `{}`, 415, ""},
		{"text", "text/plain", `{}`, 415, ""},
		{"not JSON", "", `{"region" "r"}`, 400, ""},
		{"not an object", "", `["region"]`, 400, ""},
		{"null", "", `null`, 400, ""},
		{"empty", "", ``, 400, ""},
		{"only spaces", "", "  \n", 400, ""},
		{"cut short", "", `{"region":"r"`, 400, ""},
		{"two objects", "", `{} {}`, 400, ""},
		{"trailing garbage", "", `{} x`, 400, ""},
		{"byte order mark", "", "\ufeff{}", 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ct := tc.contentType
			if ct == "" {
				ct = "application/json"
			}
			_, p := decodeString(t, ct, tc.body)
			if p == nil {
				t.Fatalf("accepted %q", tc.body)
			}
			if p.Status != tc.status {
				t.Fatalf("status %d, want %d: %+v", p.Status, tc.status, p)
			}
			var fields []string
			for _, e := range p.Errors {
				fields = append(fields, e.Field)
			}
			switch {
			case tc.field == "" && len(fields) != 0:
				t.Errorf("fields %q, want a problem with the whole body", fields)
			case tc.field != "" && (len(fields) != 1 || fields[0] != tc.field):
				t.Errorf("fields %q, want [%q]", fields, tc.field)
			}
		})
	}
}

func TestJSONFieldsFollowEncodingJSON(t *testing.T) {
	t.Parallel()
	names := slices.Sorted(maps.Keys(jsonFields(reflect.TypeFor[testBody]())))
	want := []string{"Untagged", "dry_run", "free", "inner", "labels", "list", "ptr", "quoted", "raw", "region", "shadow", "when"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	// Each name the decoder accepts is one encoding/json fills.
	var b testBody
	if err := json.Unmarshal([]byte(`{"region":"r","shadow":true,"Untagged":"u","Clash":"c"}`), &b); err != nil {
		t.Fatal(err)
	}
	if b.Region != "r" || !b.Shadow || b.testEmbedded.Shadow != "" || b.Untagged != "u" || b.testEmbeddedToo.Clash != "" {
		t.Errorf("encoding/json filled %+v", b)
	}
}
