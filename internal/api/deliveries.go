package api

import (
	"errors"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/bucketbridge/bucketbridge/internal/authz"
	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/webhook"
)

// Render encodes r exactly as GET /v1/replications/{id} answers it. A
// callback's data is this rendering, made in the transaction of the state
// change it announces.
func (s *Server) Render(r provision.Replication) ([]byte, error) {
	return encodeJSON(replicationOf(r, s.cloud))
}

// validate checks a request at the door: the spec's own rules, and the
// callback URL against this server's allowlist, which is configuration and
// so no rule of the spec's.
func (s *Server) validate(spec provision.Spec) error {
	err := spec.Validate()
	msg := s.callbackProblem(spec.CallbackURL)
	if msg == "" {
		return err
	}
	ve := &provision.ValidationError{}
	if err != nil && !errors.As(err, &ve) {
		return err
	}
	ve.Errors = append(ve.Errors, provision.FieldError{Field: "callback_url", Message: msg})
	return ve
}

// callbackProblem says what is wrong with a callback URL, or "". What the
// guard can refuse before connecting is refused here; the address it
// resolves to is checked again at every attempt.
func (s *Server) callbackProblem(raw string) string {
	if raw == "" {
		return ""
	}
	if s.callbacksOff {
		return "this server sends no callbacks (it has no BB_WEBHOOK_SECRET to sign them with); leave callback_url out, or ask its operator"
	}
	err := s.guard.CheckURL(raw)
	var ue *webhook.URLError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ue):
		return ue.Reason
	}
	return err.Error()
}

// deliveryList is the body of GET /v1/replications/{id}/deliveries.
type deliveryList struct {
	Items []deliveryJSON `json:"items"`
}

// listDeliveries lists a request's callbacks in the order of its events,
// each with every attempt.
func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request) {
	rep, ok := s.authorize(w, r, authz.ActionRead)
	if !ok {
		return
	}
	ds, err := s.store.Deliveries(r.Context(), rep.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := deliveryList{Items: make([]deliveryJSON, len(ds))}
	for i, d := range ds {
		out.Items[i] = deliveryOf(d)
	}
	writeJSON(w, http.StatusOK, out)
}

// redeliver queues a delivered or failed callback again, with the same id
// (webhook-id), so a receiver that lost it or has been fixed gets it anew.
func (s *Server) redeliver(w http.ResponseWriter, r *http.Request) {
	rep, ok := s.authorize(w, r, authz.ActionRedeliver)
	if !ok {
		return
	}
	d, err := s.store.Redeliver(r.Context(), rep.ID, chi.URLParam(r, "delivery_id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, deliveryOf(d))
}
