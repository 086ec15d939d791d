package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bucketbridge/bucketbridge/internal/authz"
	"github.com/bucketbridge/bucketbridge/internal/provision"
)

// Every request a caller cannot see answers exactly as a request that does
// not exist (404), so that nobody learns which requests other accounts
// have; a request they can see but may not act on answers 403, naming the
// role and account that would allow it.

// authzMetrics counts authorization decisions.
type authzMetrics struct {
	decisions *prometheus.CounterVec
}

func newAuthzMetrics(reg prometheus.Registerer) *authzMetrics {
	m := &authzMetrics{decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bucketbridge_authz_decisions_total",
		Help: "Authorization decisions by action and decision (allow, deny).",
	}, []string{"action", "decision"})}
	reg.MustRegister(m.decisions)
	return m
}

// grants returns the grants in force; a request decides with one set.
func (s *Server) grants() *authz.Grants { return s.holder.Grants() }

// allow counts an allowed action.
func (s *Server) allow(action authz.Action) {
	s.authzm.decisions.WithLabelValues(string(action), "allow").Inc()
}

// deny counts and logs a denied action: who, what, which account would
// have allowed it, and which request it was about ("" for a create).
func (s *Server) deny(r *http.Request, denied *authz.DeniedError, replicationID string) {
	s.authzm.decisions.WithLabelValues(string(denied.Action), "deny").Inc()
	accounts := make([]string, len(denied.Needs))
	for i, n := range denied.Needs {
		accounts[i] = n.Account
	}
	s.log.WarnContext(r.Context(), "authorization denied", "caller", callerFrom(r.Context()), "action", denied.Action,
		"account", strings.Join(accounts, " or "), "replication_id", replicationID, "needs", denied.Error(),
		"request_id", middleware.GetReqID(r.Context()))
}

// authorize reads the request named by the path and decides whether the
// caller may do action to it. When they may not, it has answered: 404 when
// the request does not exist or the caller may not see it, 403 when they
// may see it but not do action.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, action authz.Action) (provision.Replication, bool) {
	rep, err := s.store.Get(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return rep, false
	}
	g, id := s.grants(), identityFrom(r.Context())
	if err := g.Check(id, authz.ActionRead, rep.Source.AccountID, rep.Destination.AccountID); err != nil {
		var denied *authz.DeniedError
		if !errors.As(err, &denied) {
			s.fail(w, r, err)
			return rep, false
		}
		denied.Action = action // what the caller tried, though seeing it was what failed
		s.deny(r, denied, rep.ID)
		s.fail(w, r, provision.ErrNotFound)
		return rep, false
	}
	if action != authz.ActionRead {
		if err := g.Check(id, action, rep.Source.AccountID, rep.Destination.AccountID); err != nil {
			var denied *authz.DeniedError
			if errors.As(err, &denied) {
				s.deny(r, denied, rep.ID)
			}
			s.fail(w, r, err)
			return rep, false
		}
	}
	s.allow(action)
	return rep, true
}

// replay answers a remembered Idempotency-Key answer, but only to a caller
// who may still see the request it is about: to anyone else it is 404, as
// the request itself would be.
func (s *Server) replay(w http.ResponseWriter, r *http.Request, resp *provision.Response) {
	rep, err := s.store.Get(r.Context(), resp.ReplicationID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.grants().Check(identityFrom(r.Context()), authz.ActionRead, rep.Source.AccountID, rep.Destination.AccountID); err != nil {
		var denied *authz.DeniedError
		if !errors.As(err, &denied) {
			s.fail(w, r, err)
			return
		}
		s.deny(r, denied, rep.ID)
		s.fail(w, r, provision.ErrNotFound)
		return
	}
	s.allow(authz.ActionRead)
	w.Header().Set("Idempotent-Replayed", "true")
	w.Header().Set("Location", replicationPath(resp.ReplicationID))
	writeRaw(w, "application/json", resp.Status, resp.Body)
}

// forbidden is the 403 problem for a denied action.
func forbidden(denied *authz.DeniedError) *problem {
	needs := make([]needJSON, len(denied.Needs))
	for i, n := range denied.Needs {
		needs[i] = needJSON{Role: string(n.Role), Account: n.Account}
	}
	return &problem{Type: problemTypeBase + "forbidden", Status: http.StatusForbidden, Title: "Forbidden",
		Detail: denied.Error() + " (role admin on that account allows it too)", Needs: needs}
}
