package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/bucketbridge/bucketbridge/internal/authz"
	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/webhook"
)

// problemTypeBase prefixes the type URI of each kind of problem.
const problemTypeBase = "urn:bucketbridge:problem:"

// problem is an RFC 9457 problem details object.
type problem struct {
	Type      string                 `json:"type"`
	Title     string                 `json:"title"`
	Status    int                    `json:"status"`
	Detail    string                 `json:"detail,omitempty"`
	Instance  string                 `json:"instance,omitempty"`
	Errors    []provision.FieldError `json:"errors,omitempty"`
	Existing  string                 `json:"existing,omitempty"`
	Needs     []needJSON             `json:"needs,omitempty"`
	RequestID string                 `json:"request_id,omitempty"`
}

// needJSON is a role on an account that would allow a forbidden action.
type needJSON struct {
	Role    string `json:"role"`
	Account string `json:"account"`
}

func (p *problem) Error() string { return p.Title + ": " + p.Detail }

// errInternal answers every error the caller cannot act on; the cause is
// logged with the request id, never echoed.
var errInternal = &problem{Type: problemTypeBase + "internal", Status: http.StatusInternalServerError,
	Title: "Internal Server Error", Detail: "internal error; quote the request id when reporting it"}

// badRequest is a 400 validation problem naming one field.
func badRequest(field, message string) *problem {
	return &problem{Type: problemTypeBase + "validation", Status: http.StatusBadRequest, Title: "Invalid request",
		Detail: field + ": " + message, Errors: []provision.FieldError{{Field: field, Message: message}}}
}

// asProblem maps an error onto the problem the caller sees. It is the one
// place that decides HTTP statuses for domain errors.
func asProblem(err error) *problem {
	var (
		p      *problem
		ve     *provision.ValidationError
		dup    *provision.DuplicateError
		se     *provision.StateError
		denied *authz.DeniedError
	)
	switch {
	case errors.As(err, &p):
		return p
	case errors.As(err, &denied):
		return forbidden(denied)
	case errors.As(err, &ve):
		return &problem{Type: problemTypeBase + "validation", Status: http.StatusBadRequest, Title: "Invalid request",
			Detail: "one or more fields are invalid; see errors", Errors: ve.Errors}
	case errors.Is(err, provision.ErrNotFound):
		return &problem{Type: problemTypeBase + "not-found", Status: http.StatusNotFound, Title: "Not Found",
			Detail: "no replication has this id"}
	case errors.As(err, &dup):
		out := &problem{Type: problemTypeBase + "duplicate", Status: http.StatusConflict, Title: "Conflict",
			Detail: "a live replication already covers this source bucket, destination bucket and prefix; deprovision or cancel it first"}
		if dup.ExistingID != "" {
			out.Existing = replicationPath(dup.ExistingID)
		}
		return out
	case errors.As(err, &se):
		detail := se.Error()
		if se.State == provision.StateRejected {
			detail += "; a rejected request wrote nothing, so there is nothing to undo: ask again with a new request"
		}
		return &problem{Type: problemTypeBase + "state-conflict", Status: http.StatusConflict, Title: "Conflict",
			Detail: detail}
	case errors.Is(err, provision.ErrIdempotencyKeyReused):
		return &problem{Type: problemTypeBase + "idempotency-key-reused", Status: http.StatusUnprocessableEntity,
			Title: "Idempotency-Key reused", Detail: "this Idempotency-Key was first used with a different request body; use a new key for a new request"}
	case errors.Is(err, webhook.ErrDeliveryNotFound):
		return &problem{Type: problemTypeBase + "not-found", Status: http.StatusNotFound, Title: "Not Found",
			Detail: "the replication has no delivery with this id"}
	case errors.Is(err, webhook.ErrDeliveryPending):
		return &problem{Type: problemTypeBase + "delivery-pending", Status: http.StatusConflict, Title: "Conflict",
			Detail: "the delivery has not finished: it is sent again at its next_attempt_at; only a delivered or failed delivery can be redelivered"}
	case errors.Is(err, provision.ErrBadCursor):
		return badRequest("cursor", "is not a cursor this service issued; start again without it")
	case errors.Is(err, provision.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return errUnavailable
	}
	return nil
}

// errUnavailable answers a request the database could not serve in time
// (unreachable, restarting, or slower than BB_DATABASE_TIMEOUT). Nothing
// was changed that the answer does not say; the same request may be sent
// again. Its cause is logged, never echoed.
var errUnavailable = &problem{Type: problemTypeBase + "unavailable", Status: http.StatusServiceUnavailable,
	Title: "Service Unavailable", Detail: "the database is unavailable; send the request again in a few seconds"}

// unavailableRetryAfter is the Retry-After of a 503: a restarting database
// is usually back within seconds.
const unavailableRetryAfter = "5"

// fail answers err as a problem; unknown errors are logged and answered
// as a bare 500. A duplicate names the live request only to a caller who
// may see it.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var dup *provision.DuplicateError
	if errors.As(err, &dup) && dup.ExistingID != "" &&
		!s.grants().Visible(identityFrom(r.Context()), dup.SourceAccountID, dup.DestinationAccountID) {
		err = &provision.DuplicateError{}
	}
	p := asProblem(err)
	switch {
	case p == nil:
		s.log.ErrorContext(r.Context(), "request failed", "error", err,
			"method", r.Method, "path", r.URL.Path, "request_id", middleware.GetReqID(r.Context()))
		p = errInternal
	case p == errUnavailable:
		s.log.WarnContext(r.Context(), "database unavailable", "error", err,
			"method", r.Method, "path", r.URL.Path, "request_id", middleware.GetReqID(r.Context()))
		w.Header().Set("Retry-After", unavailableRetryAfter)
	}
	s.problem(w, r, p)
}

func (s *Server) problem(w http.ResponseWriter, r *http.Request, p *problem) {
	out := *p
	if out.Type == "" {
		out.Type = "about:blank"
	}
	out.Instance = r.URL.Path
	if out.Status >= 500 {
		out.RequestID = middleware.GetReqID(r.Context())
	}
	writeJSONAs(w, "application/problem+json", out.Status, out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	writeJSONAs(w, "application/json", status, v)
}

// writeJSONAs writes v indented, since admins read answers in a terminal.
func writeJSONAs(w http.ResponseWriter, contentType string, status int, v any) {
	b, err := encodeJSON(v)
	if err != nil {
		// Every answer is built from types that encode.
		panic(fmt.Sprintf("encode %T: %v", v, err))
	}
	writeRaw(w, contentType, status, b)
}

// encodeJSON is how every answer is encoded, so that a remembered answer
// replays byte for byte.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	err := enc.Encode(v)
	return buf.Bytes(), err
}

func writeRaw(w http.ResponseWriter, contentType string, status int, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	w.Write(body) //nolint:errcheck // the client went away
}
