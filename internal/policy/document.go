// Package policy builds, parses, merges, removes and compares the IAM-style policy documents
// (trust, identity, KMS key and S3 bucket policies) and the S3 replication configurations that
// bucketbridge provisions (DESIGN §3 and §10). It is pure: no AWS calls, stdlib only.
//
// Everything bucketbridge owns is identified by name, never by principal: statements whose Sid
// starts with [OwnedSidPrefix] and replication rules whose ID starts with [OwnedRuleIDPrefix].
// Everything else in a document is kept exactly as it was, in its original order.
package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"
)

// Version2012 is the current IAM policy language version. Documents without it cannot use
// policy variables. See https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_version.html
const Version2012 = "2012-10-17"

// Document is an IAM-style policy document (trust, identity, key or bucket policy).
type Document struct {
	// Version is the policy language version, normally [Version2012].
	Version string
	// ID is the optional JSON "Id" element.
	ID string
	// Statement is the JSON "Statement": a single object or an array on input, always an
	// array on output.
	Statement []Statement

	// extra keeps unknown top-level keys, re-emitted on output after the known ones.
	extra map[string]json.RawMessage
}

// Statement is one statement of a [Document].
type Statement struct {
	// Sid is the optional statement ID; IAM allows only [A-Za-z0-9] in identity policies.
	Sid string
	// Effect is "Allow" or "Deny".
	Effect string
	// Principal is nil when absent (identity policies have none).
	Principal *Principal
	// NotPrincipal is nil when absent.
	NotPrincipal *Principal
	// Action lists the actions the statement applies to.
	Action Values
	// NotAction lists the actions the statement does not apply to.
	NotAction Values
	// Resource lists the resources the statement applies to.
	Resource Values
	// NotResource lists the resources the statement does not apply to.
	NotResource Values
	// Condition is nil when absent.
	Condition Condition

	// extra keeps unknown keys, re-emitted on output after the known ones.
	extra map[string]json.RawMessage
}

// Values is a JSON string or array of strings. On output a single value is written as a
// string and several as an array, which AWS treats as the same thing. Inside a Condition, JSON
// numbers and booleans are accepted and kept as their literal text ("1.2", "false"), which IAM
// also treats as the same thing.
type Values []string

// Principal is "*" or a map like {"AWS": ..., "Service": ...}.
type Principal struct {
	// All is the JSON string "*" (everyone). {"AWS": "*"} is not All but IDs["AWS"] = ["*"].
	All bool
	// IDs maps a principal type ("AWS", "Service", "Federated", "CanonicalUser") to its
	// identifiers. Unknown types are kept as they are.
	IDs map[string]Values
}

// Condition maps an operator (StringEquals, StringLike, ArnLike, ...) to condition keys and their values.
type Condition map[string]map[string]Values

// ParseError reports a document that is not valid JSON or whose shape IAM would reject.
type ParseError struct {
	// Path locates the offending element, e.g. "Statement[2].Principal".
	Path string
	// Msg says what is wrong with it.
	Msg string
}

// Error implements error.
func (e *ParseError) Error() string {
	if e.Path == "" {
		return "parse policy: " + e.Msg
	}
	return fmt.Sprintf("parse policy: %s: %s", e.Path, e.Msg)
}

// Parse decodes a policy document. It rejects malformed JSON and invalid shapes (a statement
// that is not an object, an Effect other than "Allow"/"Deny", a Principal that is neither "*"
// nor an object, a value that is neither a string nor an array of strings) with a [*ParseError].
// Element names are matched exactly (IAM's are case-sensitive); unknown ones are kept.
func Parse(data []byte) (Document, error) {
	var d Document
	if err := d.UnmarshalJSON(data); err != nil {
		return Document{}, err
	}
	return d, nil
}

// DecodeIAM URL-decodes a document as IAM's GetRole, GetRolePolicy and friends return it (RFC
// 3986 percent-encoding, which the Go SDK does not undo), then parses it. A document that is
// already plain JSON (it starts with "{", which the encoding always escapes) is parsed as is.
// See https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetRolePolicy.html
func DecodeIAM(s string) (Document, error) {
	if strings.HasPrefix(strings.TrimSpace(s), "{") {
		return Parse([]byte(s))
	}
	// PathUnescape, not QueryUnescape: in RFC 3986 a "+" is a plus sign, not a space.
	dec, err := url.PathUnescape(s)
	if err != nil {
		return Document{}, &ParseError{Msg: "url-decode: " + err.Error()}
	}
	return Parse([]byte(dec))
}

// UnmarshalJSON implements json.Unmarshaler with the rules of [Parse].
func (d *Document) UnmarshalJSON(data []byte) error {
	obj, err := object(data, "")
	if err != nil {
		return err
	}
	*d = Document{}
	for k, raw := range obj {
		switch k {
		case "Version":
			if d.Version, err = str(raw, "Version"); err != nil {
				return err
			}
		case "Id":
			if d.ID, err = str(raw, "Id"); err != nil {
				return err
			}
		case "Statement":
			if d.Statement, err = statements(raw); err != nil {
				return err
			}
		default:
			d.setExtra(k, raw)
		}
	}
	return nil
}

func statements(raw json.RawMessage) ([]Statement, error) {
	raw = bytes.TrimSpace(raw)
	if isNull(raw) {
		return nil, nil
	}
	if len(raw) > 0 && raw[0] == '{' {
		var s Statement
		if err := s.unmarshal(raw, "Statement"); err != nil {
			return nil, err
		}
		return []Statement{s}, nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, &ParseError{Path: "Statement", Msg: "must be an object or an array of objects"}
	}
	out := make([]Statement, 0, len(list))
	for i, r := range list {
		var s Statement
		if err := s.unmarshal(r, fmt.Sprintf("Statement[%d]", i)); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// UnmarshalJSON implements json.Unmarshaler with the rules of [Parse].
func (s *Statement) UnmarshalJSON(data []byte) error { return s.unmarshal(data, "Statement") }

func (s *Statement) unmarshal(data []byte, path string) error {
	obj, err := object(data, path)
	if err != nil {
		return err
	}
	*s = Statement{}
	for k, raw := range obj {
		p := path + "." + k
		switch k {
		case "Sid":
			s.Sid, err = str(raw, p)
		case "Effect":
			s.Effect, err = str(raw, p)
			if err == nil && s.Effect != "Allow" && s.Effect != "Deny" {
				err = &ParseError{Path: p, Msg: fmt.Sprintf("must be \"Allow\" or \"Deny\", not %q", s.Effect)}
			}
		case "Principal":
			s.Principal, err = principal(raw, p)
		case "NotPrincipal":
			s.NotPrincipal, err = principal(raw, p)
		case "Action":
			s.Action, err = values(raw, p, false)
		case "NotAction":
			s.NotAction, err = values(raw, p, false)
		case "Resource":
			s.Resource, err = values(raw, p, false)
		case "NotResource":
			s.NotResource, err = values(raw, p, false)
		case "Condition":
			s.Condition, err = condition(raw, p)
		default:
			s.setExtra(k, raw)
		}
		if err != nil {
			return err
		}
	}
	if _, ok := obj["Effect"]; !ok {
		return &ParseError{Path: path, Msg: "missing Effect"}
	}
	return nil
}

// UnmarshalJSON implements json.Unmarshaler: "*" or an object of string-or-array values.
func (p *Principal) UnmarshalJSON(data []byte) error {
	q, err := principal(data, "Principal")
	if err != nil {
		return err
	}
	if q == nil {
		*p = Principal{}
		return nil
	}
	*p = *q
	return nil
}

func principal(raw json.RawMessage, path string) (*Principal, error) {
	raw = bytes.TrimSpace(raw)
	if isNull(raw) {
		return nil, nil
	}
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, &ParseError{Path: path, Msg: err.Error()}
		}
		if s != "*" {
			return nil, &ParseError{Path: path, Msg: fmt.Sprintf("a string principal must be \"*\", not %q", s)}
		}
		return &Principal{All: true}, nil
	}
	obj, err := object(raw, path)
	if err != nil {
		return nil, &ParseError{Path: path, Msg: "must be \"*\" or an object like {\"AWS\": ...}"}
	}
	p := &Principal{IDs: make(map[string]Values, len(obj))}
	for k, r := range obj {
		v, err := values(r, path+"."+k, false)
		if err != nil {
			return nil, err
		}
		p.IDs[k] = v
	}
	return p, nil
}

// UnmarshalJSON implements json.Unmarshaler: a string or an array of strings.
func (v *Values) UnmarshalJSON(data []byte) error {
	out, err := values(data, "value", false)
	if err != nil {
		return err
	}
	*v = out
	return nil
}

// values decodes a string or an array of strings; scalars (numbers, booleans) are accepted
// as their literal text when scalars is true (condition values).
func values(raw json.RawMessage, path string, scalars bool) (Values, error) {
	raw = bytes.TrimSpace(raw)
	if isNull(raw) {
		return nil, nil
	}
	if len(raw) > 0 && raw[0] == '[' {
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, &ParseError{Path: path, Msg: err.Error()}
		}
		out := make(Values, 0, len(list))
		for i, r := range list {
			s, err := scalar(r, fmt.Sprintf("%s[%d]", path, i), scalars)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	}
	s, err := scalar(raw, path, scalars)
	if err != nil {
		return nil, err
	}
	return Values{s}, nil
}

func scalar(raw json.RawMessage, path string, scalars bool) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", &ParseError{Path: path, Msg: err.Error()}
		}
		return s, nil
	}
	if scalars {
		switch {
		case string(raw) == "true" || string(raw) == "false":
			return string(raw), nil
		case len(raw) > 0 && (raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')):
			var n json.Number
			if err := json.Unmarshal(raw, &n); err == nil {
				return n.String(), nil
			}
		}
		return "", &ParseError{Path: path, Msg: "must be a string, number or boolean"}
	}
	return "", &ParseError{Path: path, Msg: "must be a string or an array of strings"}
}

func condition(raw json.RawMessage, path string) (Condition, error) {
	if isNull(bytes.TrimSpace(raw)) {
		return nil, nil
	}
	ops, err := object(raw, path)
	if err != nil {
		return nil, err
	}
	c := make(Condition, len(ops))
	for op, r := range ops {
		keys, err := object(r, path+"."+op)
		if err != nil {
			return nil, err
		}
		m := make(map[string]Values, len(keys))
		for k, kr := range keys {
			v, err := values(kr, path+"."+op+"."+k, true)
			if err != nil {
				return nil, err
			}
			m[k] = v
		}
		c[op] = m
	}
	return c, nil
}

func object(data []byte, path string) (map[string]json.RawMessage, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		if !json.Valid(data) {
			return nil, &ParseError{Path: path, Msg: "malformed JSON"}
		}
		return nil, &ParseError{Path: path, Msg: "must be a JSON object"}
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, &ParseError{Path: path, Msg: fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, se)}
		}
		return nil, &ParseError{Path: path, Msg: err.Error()}
	}
	return obj, nil
}

func str(raw json.RawMessage, path string) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", &ParseError{Path: path, Msg: "must be a string"}
	}
	return s, nil
}

func isNull(raw []byte) bool { return string(raw) == "null" }

func (d *Document) setExtra(k string, raw json.RawMessage) {
	if d.extra == nil {
		d.extra = map[string]json.RawMessage{}
	}
	d.extra[k] = compact(raw)
}

func (s *Statement) setExtra(k string, raw json.RawMessage) {
	if s.extra == nil {
		s.extra = map[string]json.RawMessage{}
	}
	s.extra[k] = compact(raw)
}

// compact writes raw, an unknown key's value, as encoding/json would
// write it back: compact, with <, > and & escaped.
func compact(raw json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return slices.Clone(raw)
	}
	var h bytes.Buffer
	json.HTMLEscape(&h, b.Bytes())
	return h.Bytes()
}

// The documents write themselves into one buffer: they are written for
// every write, comparison and size check, and encoding/json would check
// and compact again what every nested MarshalJSON returns. The bytes are
// those encoding/json writes for them (compact, <, > and & escaped), so a
// document's size is the size of what is sent.

// MarshalJSON writes the document as AWS expects: Version, Id, Statement (always an array),
// then unknown top-level keys in sorted order.
func (d Document) MarshalJSON() ([]byte, error) { return d.appendJSON(nil), nil }

func (d Document) appendJSON(b []byte) []byte {
	o := objectWriter{b: b}
	if d.Version != "" {
		o.string("Version", d.Version)
	}
	if d.ID != "" {
		o.string("Id", d.ID)
	}
	o.key("Statement")
	o.b = append(o.b, '[')
	for i, s := range d.Statement {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		o.b = s.appendJSON(o.b)
	}
	o.b = append(o.b, ']')
	o.extras(d.extra)
	return o.end()
}

// MarshalJSON writes the statement's elements in the order AWS documents them, then unknown
// keys in sorted order. Empty elements are omitted.
func (s Statement) MarshalJSON() ([]byte, error) { return s.appendJSON(nil), nil }

func (s Statement) appendJSON(b []byte) []byte {
	o := objectWriter{b: b}
	if s.Sid != "" {
		o.string("Sid", s.Sid)
	}
	o.string("Effect", s.Effect)
	if s.Principal != nil {
		o.key("Principal")
		o.b = s.Principal.appendJSON(o.b)
	}
	if s.NotPrincipal != nil {
		o.key("NotPrincipal")
		o.b = s.NotPrincipal.appendJSON(o.b)
	}
	for _, f := range []struct {
		name string
		v    Values
	}{{"Action", s.Action}, {"NotAction", s.NotAction}, {"Resource", s.Resource}, {"NotResource", s.NotResource}} {
		if len(f.v) > 0 {
			o.key(f.name)
			o.b = f.v.appendJSON(o.b)
		}
	}
	if s.Condition != nil {
		o.key("Condition")
		o.b = s.Condition.appendJSON(o.b)
	}
	o.extras(s.extra)
	return o.end()
}

// MarshalJSON writes a single value as a string and several as an array.
func (v Values) MarshalJSON() ([]byte, error) { return v.appendJSON(nil), nil }

func (v Values) appendJSON(b []byte) []byte {
	if len(v) == 1 {
		return appendString(b, v[0])
	}
	b = append(b, '[')
	for i, s := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// MarshalJSON writes "*" for All, otherwise an object with its types in sorted order.
func (p Principal) MarshalJSON() ([]byte, error) { return p.appendJSON(nil), nil }

func (p Principal) appendJSON(b []byte) []byte {
	if p.All {
		return append(b, `"*"`...)
	}
	if p.IDs == nil {
		return append(b, "{}"...)
	}
	return appendValuesByKey(b, p.IDs)
}

// MarshalJSON writes operators and keys in sorted order.
func (c Condition) MarshalJSON() ([]byte, error) { return c.appendJSON(nil), nil }

func (c Condition) appendJSON(b []byte) []byte {
	o := objectWriter{b: b}
	for _, op := range slices.Sorted(maps.Keys(c)) {
		o.key(op)
		o.b = appendValuesByKey(o.b, c[op])
	}
	return o.end()
}

// appendValuesByKey writes m as an object with its keys in sorted order,
// and a nil m as null, as encoding/json does.
func appendValuesByKey(b []byte, m map[string]Values) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	o := objectWriter{b: b}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		o.key(k)
		o.b = m[k].appendJSON(o.b)
	}
	return o.end()
}

// appendString writes s as a JSON string, as encoding/json does.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// objectWriter writes a JSON object's members in the order they are given.
type objectWriter struct {
	b []byte
	n int // members written
}

func (o *objectWriter) key(k string) {
	if o.n == 0 {
		o.b = append(o.b, '{')
	} else {
		o.b = append(o.b, ',')
	}
	o.n++
	o.b = appendString(o.b, k)
	o.b = append(o.b, ':')
}

func (o *objectWriter) string(k, v string) {
	o.key(k)
	o.b = appendString(o.b, v)
}

// extras writes unknown keys, kept compact and escaped, in sorted order.
func (o *objectWriter) extras(m map[string]json.RawMessage) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		o.key(k)
		o.b = append(o.b, m[k]...)
	}
}

func (o *objectWriter) end() []byte {
	if o.n == 0 {
		return append(o.b, "{}"...)
	}
	return append(o.b, '}')
}

// Equal reports whether a and b grant the same thing: Values are compared as sets (a string
// equals a one-element list; order and duplicates do not matter; actions ignore case, as IAM
// does), principals and condition values likewise, and statements as a set (their order does
// not change what a policy grants). Sids, Effects, Version, Id and unknown keys must match.
func Equal(a, b Document) bool {
	if a.Version != b.Version || a.ID != b.ID || !extrasEqual(a.extra, b.extra) {
		return false
	}
	return slices.Equal(statementSet(a.Statement), statementSet(b.Statement))
}

func statementSet(ss []Statement) []string {
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		out = append(out, canonicalStatement(s))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// canonicalStatement renders s in a normal form: every set sorted and deduplicated.
func canonicalStatement(s Statement) string {
	c := struct {
		Sid, Effect                              string
		Principal, NotPrincipal                  *canonPrincipal
		Action, NotAction, Resource, NotResource []string
		Condition                                map[string]map[string][]string
		Extra                                    map[string]string
	}{
		Sid: s.Sid, Effect: s.Effect,
		Principal: canonPrincipalOf(s.Principal), NotPrincipal: canonPrincipalOf(s.NotPrincipal),
		Action: normSet(s.Action, true), NotAction: normSet(s.NotAction, true),
		Resource: normSet(s.Resource, false), NotResource: normSet(s.NotResource, false),
		Extra: canonExtras(s.extra),
	}
	if s.Condition != nil {
		c.Condition = map[string]map[string][]string{}
		for op, keys := range s.Condition {
			m := map[string][]string{}
			for k, v := range keys {
				m[k] = normSet(v, false)
			}
			c.Condition[op] = m
		}
	}
	b, err := json.Marshal(c)
	if err != nil { // cannot happen: only strings, maps and slices
		panic(err)
	}
	return string(b)
}

type canonPrincipal struct {
	All bool
	IDs map[string][]string
}

func canonPrincipalOf(p *Principal) *canonPrincipal {
	if p == nil {
		return nil
	}
	c := &canonPrincipal{All: p.All}
	if !p.All {
		c.IDs = map[string][]string{}
		for k, v := range p.IDs {
			c.IDs[k] = normSet(v, false)
		}
	}
	return c
}

func normSet(v Values, fold bool) []string {
	if len(v) == 0 {
		return nil
	}
	out := slices.Clone([]string(v))
	if fold {
		for i := range out {
			out[i] = strings.ToLower(out[i])
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func canonExtras(m map[string]json.RawMessage) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, raw := range m {
		out[k] = canonJSON(raw)
	}
	return out
}

// canonJSON re-encodes raw so that object key order and whitespace do not matter.
func canonJSON(raw json.RawMessage) string {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return string(raw)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return string(raw)
	}
	return string(b)
}

func extrasEqual(a, b map[string]json.RawMessage) bool {
	ca, cb := canonExtras(a), canonExtras(b)
	if len(ca) != len(cb) {
		return false
	}
	for k, v := range ca {
		if w, ok := cb[k]; !ok || v != w {
			return false
		}
	}
	return true
}
