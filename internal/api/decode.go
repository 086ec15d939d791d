package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// maxBody is the largest request body accepted; a replication request is a
// few hundred bytes.
const maxBody = 1 << 20

// decodeJSON reads exactly one JSON object from r's body into v. Every way a
// body can be wrong becomes a 4xx problem naming what is wrong.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return &problem{Type: problemTypeBase + "unsupported-media-type", Status: http.StatusUnsupportedMediaType,
			Title: "Unsupported Media Type", Detail: "send the body as application/json"}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeProblem(err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return decodeProblem(err)
		}
		return malformed("the body must hold exactly one JSON object")
	}
	return nil
}

func decodeProblem(err error) *problem {
	var (
		tooLarge *http.MaxBytesError
		syntax   *json.SyntaxError
		typeErr  *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &tooLarge):
		return &problem{Type: problemTypeBase + "too-large", Status: http.StatusRequestEntityTooLarge,
			Title: "Content Too Large", Detail: fmt.Sprintf("the body must be at most %d bytes", maxBody)}
	case errors.As(err, &syntax):
		return malformed(fmt.Sprintf("the body is not valid JSON (at byte %d): %v", syntax.Offset, syntax))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return malformed("the body is empty or cut short")
	case errors.As(err, &typeErr):
		// The body embeds specJSON, whose Go name the decoder puts in the
		// path; callers know only the JSON names.
		field := strings.TrimPrefix(typeErr.Field, "specJSON.")
		if field == "" {
			return malformed("the body must be a JSON object")
		}
		return badRequest(field, "must be "+jsonKind(typeErr.Type.Kind().String()))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return badRequest(field, "is not a known field")
	}
	return malformed("the body could not be read: " + err.Error())
}

func malformed(detail string) *problem {
	return &problem{Type: problemTypeBase + "malformed", Status: http.StatusBadRequest, Title: "Malformed request", Detail: detail}
}

// jsonKind names a Go kind the way a JSON caller thinks of it.
func jsonKind(kind string) string {
	switch kind {
	case "bool":
		return "a boolean"
	case "string":
		return "a string"
	case "struct", "map":
		return "an object"
	case "slice", "array":
		return "an array"
	case "int", "int32", "int64", "uint", "float64":
		return "a number"
	}
	return "of another type"
}
