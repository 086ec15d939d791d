package api

import (
	"bytes"
	"cmp"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxBody is the largest request body accepted; a replication request is a
// few hundred bytes.
const maxBody = 1 << 20

// maxDepth bounds how deeply a body may nest objects and arrays; request
// bodies nest two or three levels.
const maxDepth = 32

// decodeJSON reads exactly one JSON object from r's body into v, a pointer
// to a struct whose fields carry json tags. Every way a body can be wrong
// becomes a 4xx problem naming what is wrong, and none repeats the text of
// an internal error.
//
// It is stricter than encoding/json, which keeps the last of duplicate
// keys, matches keys to fields ignoring case (even through Unicode case
// folding, so "tic\u212Aet" is "ticket"), and replaces invalid UTF-8 with
// U+FFFD. Each of these lets two parties read one body differently: a proxy
// or log that keeps the first "ticket" sees another request than the one
// stored. So the body is first walked token by token against the target
// type's exact JSON names, then decoded.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return unsupportedMediaType("send the body as application/json")
	}
	// JSON exchanged between systems must be UTF-8 (RFC 8259, section 8.1).
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return unsupportedMediaType("send the body in UTF-8: charset=utf-8, or no charset")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		p := readProblem(err)
		if p.Status == http.StatusRequestTimeout {
			// The rest of the body may still arrive; the connection
			// cannot carry another request.
			w.Header().Set("Connection", "close")
		}
		return p
	}
	if err := checkJSON(body, reflect.TypeOf(v)); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		// checkJSON refuses everything encoding/json would; this is a
		// safety net that still never echoes the error's text.
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return badRequest(typeErr.Field, "must be "+jsonKind(typeErr.Type))
		}
		return malformed("the body does not fit a request")
	}
	return nil
}

func unsupportedMediaType(detail string) *problem {
	return &problem{Type: problemTypeBase + "unsupported-media-type", Status: http.StatusUnsupportedMediaType,
		Title: "Unsupported Media Type", Detail: detail}
}

// readProblem answers an error reading the body. The error's text names
// socket addresses and is not the caller's to see.
func readProblem(err error) *problem {
	var (
		tooLarge *http.MaxBytesError
		netErr   net.Error
	)
	switch {
	case errors.As(err, &tooLarge):
		return &problem{Type: problemTypeBase + "too-large", Status: http.StatusRequestEntityTooLarge,
			Title: "Content Too Large", Detail: fmt.Sprintf("the body must be at most %d bytes", maxBody)}
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return &problem{Type: problemTypeBase + "timeout", Status: http.StatusRequestTimeout,
			Title: "Request Timeout", Detail: "the body did not arrive in time; send the request again"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return malformed("the body is shorter than its Content-Length")
	}
	return malformed("the body could not be read")
}

func malformed(detail string) *problem {
	return &problem{Type: problemTypeBase + "malformed", Status: http.StatusBadRequest, Title: "Malformed request", Detail: detail}
}

// checkJSON walks body, which must hold exactly one JSON object, against
// the type t it will be decoded into, and refuses what encoding/json would
// accept only by guessing: duplicate keys, keys that match a field only
// when case is ignored, unknown keys, values of the wrong type, strings
// that are not valid UTF-8 and nesting deeper than maxDepth. Problems about
// a value name its path, such as source.account_id.
func checkJSON(body []byte, t reflect.Type) error {
	c := &checker{body: body, dec: json.NewDecoder(bytes.NewReader(body))}
	c.dec.UseNumber()
	tok, err := c.token()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return malformed("the body must be a JSON object")
	}
	if err := c.value(tok, t, "", 0); err != nil {
		return err
	}
	if _, err := c.dec.Token(); err != io.EOF {
		return malformed("the body must hold exactly one JSON object")
	}
	return nil
}

// checker reads one body's tokens while remembering where each began, so
// a string's raw bytes can be checked before the decoder cleans them.
type checker struct {
	body  []byte
	dec   *json.Decoder
	start int64 // offset where the last token's search began
}

// token reads the next token; a syntax error becomes a problem.
func (c *checker) token() (json.Token, error) {
	c.start = c.dec.InputOffset()
	tok, err := c.dec.Token()
	if err == nil {
		return tok, nil
	}
	var syntax *json.SyntaxError
	switch {
	case errors.As(err, &syntax):
		// The message describes the body's own bytes, never the server.
		return nil, malformed(fmt.Sprintf("the body is not valid JSON (at byte %d): %s", syntax.Offset, syntax.Error()))
	case errors.Is(err, io.EOF) && c.start == 0 && len(bytes.TrimSpace(c.body)) == 0:
		return nil, malformed("the body is empty")
	}
	return nil, malformed("the body is cut short")
}

// validString reports whether the string token just read was valid UTF-8
// as sent, and escapes no lone UTF-16 surrogate (which encoding/json also
// turns into U+FFFD).
func (c *checker) validString() bool {
	raw := c.body[c.start:c.dec.InputOffset()]
	if !utf8.Valid(raw) {
		return false
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		i++
		if raw[i] != 'u' {
			continue
		}
		r := hex4(raw[i+1 : i+5])
		i += 4
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return false
		case r >= 0xD800 && r <= 0xDBFF:
			if i+6 >= len(raw) || raw[i+1] != '\\' || raw[i+2] != 'u' {
				return false
			}
			if lo := hex4(raw[i+3 : i+7]); lo < 0xDC00 || lo > 0xDFFF {
				return false
			}
			i += 6
		}
	}
	return true
}

// hex4 reads the four hex digits of a \u escape the decoder already checked.
func hex4(b []byte) rune {
	n, _ := strconv.ParseUint(string(b), 16, 16)
	return rune(n)
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// value checks the value that starts with tok against t.
func (c *checker) value(tok json.Token, t reflect.Type, path string, depth int) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if depth > maxDepth {
		return badRequest(fieldName(path), fmt.Sprintf("nests deeper than %d levels", maxDepth))
	}
	if tok == nil {
		return nil // null leaves the field as it is
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		return c.custom(tok, t, path, depth)
	}
	switch tok := tok.(type) {
	case json.Delim:
		return c.container(tok, t, path, depth)
	case string:
		if !c.validString() {
			return badRequest(fieldName(path), "must be valid UTF-8")
		}
		if t.Kind() == reflect.String || t.Kind() == reflect.Interface ||
			reflect.PointerTo(t).Implements(textUnmarshaler) ||
			(t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8) {
			return nil
		}
	case json.Number:
		switch t.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			if _, err := strconv.ParseInt(tok.String(), 10, t.Bits()); err != nil {
				return badRequest(fieldName(path), "must be a whole number that fits "+t.Kind().String())
			}
			return nil
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			if _, err := strconv.ParseUint(tok.String(), 10, t.Bits()); err != nil {
				return badRequest(fieldName(path), "must be a whole number, 0 or more, that fits "+t.Kind().String())
			}
			return nil
		case reflect.Float32, reflect.Float64:
			if _, err := strconv.ParseFloat(tok.String(), t.Bits()); err != nil {
				return badRequest(fieldName(path), "must be a number in range")
			}
			return nil
		case reflect.Interface:
			return nil
		}
	case bool:
		if t.Kind() == reflect.Bool || t.Kind() == reflect.Interface {
			return nil
		}
	}
	return badRequest(fieldName(path), "must be "+jsonKind(t))
}

// custom checks a value of a type that reads its own JSON: the generic
// rules first, then the type's own reading of the value's bytes, so its
// error can name the field.
func (c *checker) custom(tok json.Token, t reflect.Type, path string, depth int) error {
	start := c.start
	switch tok := tok.(type) {
	case json.Delim:
		if err := c.container(tok, reflect.TypeFor[any](), path, depth); err != nil {
			return err
		}
	case string:
		if !c.validString() {
			return badRequest(fieldName(path), "must be valid UTF-8")
		}
	}
	raw := bytes.TrimLeft(c.body[start:c.dec.InputOffset()], " \t\r\n:,")
	if err := json.Unmarshal(raw, reflect.New(t).Interface()); err != nil {
		return badRequest(fieldName(path), "must be "+jsonKind(t))
	}
	return nil
}

// container checks an object or array whose opening delimiter was just read.
func (c *checker) container(open json.Delim, t reflect.Type, path string, depth int) error {
	if open == '[' {
		var elem reflect.Type
		switch t.Kind() {
		case reflect.Slice, reflect.Array:
			elem = t.Elem()
		case reflect.Interface:
			elem = t
		default:
			return badRequest(fieldName(path), "must be "+jsonKind(t))
		}
		for i := 0; c.dec.More(); i++ {
			tok, err := c.token()
			if err != nil {
				return err
			}
			if err := c.value(tok, elem, fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
		_, err := c.token()
		return err
	}

	var fields map[string]jsonField
	var elem reflect.Type
	switch t.Kind() {
	case reflect.Struct:
		fields = jsonFields(t)
	case reflect.Map:
		elem = t.Elem()
	case reflect.Interface:
		elem = t
	default:
		return badRequest(fieldName(path), "must be "+jsonKind(t))
	}
	seen := map[string]bool{}
	for c.dec.More() {
		tok, err := c.token()
		if err != nil {
			return err
		}
		key := tok.(string) // the decoder allows nothing else here
		p := joinPath(path, key)
		if !c.validString() {
			return badRequest(p, "is not valid UTF-8")
		}
		if seen[key] {
			return badRequest(p, "appears more than once")
		}
		seen[key] = true
		f := jsonField{typ: elem}
		if fields != nil {
			var ok bool
			if f, ok = fields[key]; !ok {
				for name := range fields {
					if strings.EqualFold(name, key) {
						return badRequest(p, fmt.Sprintf("is not a known field; names are case-sensitive: did you mean %q?", name))
					}
				}
				return badRequest(p, "is not a known field")
			}
		}
		if tok, err = c.token(); err != nil {
			return err
		}
		if f.quoted && tok != nil {
			if err := c.quoted(tok, f.typ, p); err != nil {
				return err
			}
			continue
		}
		if err := c.value(tok, f.typ, p, depth+1); err != nil {
			return err
		}
	}
	_, err := c.token()
	return err
}

// quoted checks the string given for a field tagged ",string", which
// holds its value's JSON inside a string.
func (c *checker) quoted(tok json.Token, t reflect.Type, path string) error {
	s, ok := tok.(string)
	if !ok {
		return badRequest(path, "must be a string holding "+jsonKind(t))
	}
	if !c.validString() {
		return badRequest(path, "must be valid UTF-8")
	}
	if err := json.Unmarshal([]byte(s), reflect.New(t).Interface()); err != nil {
		return badRequest(path, "must be a string holding "+jsonKind(t))
	}
	return nil
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// fieldName names the body itself when a problem is at its root.
func fieldName(path string) string { return cmp.Or(path, "(body)") }

// jsonField is a struct field as encoding/json decodes it.
type jsonField struct {
	typ reflect.Type
	// quoted is set by the ",string" option on a scalar: the JSON value is
	// a string holding the field's JSON.
	quoted bool
}

// jsonFields maps the JSON names encoding/json decodes into struct type t
// to their fields, following its rules: tagged names; fields of embedded
// structs promoted unless a shallower field has the same name; two fields
// with one name at one depth cancel out unless exactly one is tagged.
func jsonFields(t reflect.Type) map[string]jsonField {
	type candidate struct {
		field  jsonField
		tagged bool
		count  int
	}
	out := map[string]*candidate{}
	visited := map[reflect.Type]bool{}
	for level := []reflect.Type{t}; len(level) > 0; {
		var next []reflect.Type
		found := map[string]*candidate{}
		for _, st := range level {
			if visited[st] {
				continue
			}
			visited[st] = true
			for i := range st.NumField() {
				sf := st.Field(i)
				ft := sf.Type
				if ft.Name() == "" && ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if sf.Anonymous {
					if !sf.IsExported() && ft.Kind() != reflect.Struct {
						continue
					}
				} else if !sf.IsExported() {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, opts, _ := strings.Cut(tag, ",")
				if name == "" && sf.Anonymous && ft.Kind() == reflect.Struct {
					next = append(next, ft)
					continue
				}
				tagged := name != ""
				name = cmp.Or(name, sf.Name)
				if out[name] != nil {
					continue // a shallower field hides it
				}
				f := jsonField{typ: sf.Type, quoted: hasOption(opts, "string") && scalar(ft)}
				switch c := found[name]; {
				case c == nil:
					found[name] = &candidate{field: f, tagged: tagged, count: 1}
				case tagged && !c.tagged:
					*c = candidate{field: f, tagged: true, count: 1}
				case tagged == c.tagged:
					c.count++
				}
			}
		}
		for name, c := range found {
			out[name] = c
		}
		level = next
	}
	fields := make(map[string]jsonField, len(out))
	for name, c := range out {
		if c.count == 1 {
			fields[name] = c.field
		}
	}
	return fields
}

func hasOption(opts, want string) bool {
	for o := range strings.SplitSeq(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}

// scalar reports whether the ",string" option applies to a field of type t.
func scalar(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.String, reflect.Float32, reflect.Float64,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return true
	}
	return false
}

// jsonKind names the JSON a Go type is decoded from, the way a JSON caller
// thinks of it.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		return "a string"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.String:
		return "a string"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
			return "a base64 string"
		}
		return "an array"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a value of another form"
}
