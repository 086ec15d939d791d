package api

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/bucketbridge/bucketbridge/internal/authz"
	"github.com/bucketbridge/bucketbridge/internal/provision"
)

const (
	defaultLimit = 50
	maxLimit     = 200
	// maxIdempotencyKey bounds the header; callers use UUIDs or ticket ids.
	maxIdempotencyKey = 255
)

var idempotencyKeyPattern = regexp.MustCompile(`^[\x21-\x7e]+$`)

// createReplication stores a request, or answers a dry run. Both need role
// requester on the source account; the request then waits for an approver
// of the destination account unless the caller is one.
func (s *Server) createReplication(w http.ResponseWriter, r *http.Request) {
	body := newCreateBody()
	if err := decodeJSON(w, r, &body); err != nil {
		s.fail(w, r, err)
		return
	}
	spec := body.domain()
	if err := s.validate(spec); err != nil {
		s.fail(w, r, err)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if !body.DryRun && key != "" && (len(key) > maxIdempotencyKey || !idempotencyKeyPattern.MatchString(key)) {
		s.fail(w, r, badRequest("Idempotency-Key", "must be 1 to 255 printable ASCII characters without spaces"))
		return
	}
	// The hash covers the decoded request, so whitespace and field order do
	// not make a retry look like a different request.
	canonical, err := json.Marshal(body.specJSON)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	hash := sha256.Sum256(canonical)
	g, id, caller := s.grants(), identityFrom(r.Context()), callerFrom(r.Context())
	if err := g.Check(id, authz.ActionCreate, spec.Source.AccountID, spec.Destination.AccountID); err != nil {
		// A retry of what the caller created while they still could is a
		// read of that request, not a new creation.
		if !body.DryRun && key != "" {
			replay, rerr := s.store.Replay(r.Context(), caller, key, hash[:])
			if rerr != nil && !errors.Is(rerr, provision.ErrIdempotencyKeyReused) {
				s.fail(w, r, rerr)
				return
			}
			if replay != nil {
				s.replay(w, r, replay)
				return
			}
		}
		var denied *authz.DeniedError
		if errors.As(err, &denied) {
			s.deny(r, denied, "")
		}
		s.fail(w, r, err)
		return
	}
	s.allow(authz.ActionCreate)
	needsApproval := g.NeedsApproval(id, spec.Source.AccountID, spec.Destination.AccountID)
	if body.DryRun {
		plan, err := provision.DryRun(spec, s.trust)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, planOf(plan, needsApproval, spec.Destination.AccountID))
		return
	}
	rep, replay, err := s.store.Create(r.Context(), provision.NewReplication{
		Spec: spec, RequestedBy: caller, NeedsApproval: needsApproval,
		IdempotencyKey: key, RequestHash: hash[:],
		Answer: func(rep provision.Replication) (provision.Response, error) {
			b, err := encodeJSON(replicationOf(rep, s.cloud))
			return provision.Response{Status: http.StatusAccepted, Body: b}, err
		},
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if replay != nil {
		s.replay(w, r, replay)
		return
	}
	w.Header().Set("Location", replicationPath(rep.ID))
	writeJSON(w, http.StatusAccepted, replicationOf(rep, s.cloud))
}

func (s *Server) getReplication(w http.ResponseWriter, r *http.Request) {
	rep, ok := s.authorize(w, r, authz.ActionRead)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, replicationOf(rep, s.cloud))
}

// listPage is the body of GET /v1/replications.
type listPage struct {
	Items      []replicationJSON `json:"items"`
	NextCursor *string           `json:"next_cursor"`
}

func (s *Server) listReplications(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// Only the requests the caller may see are listed, filtered in the
	// query itself, so that pages stay full and cursors stay valid.
	f.Scope.Accounts, f.Scope.All = s.grants().VisibleAccounts(identityFrom(r.Context()))
	s.allow(authz.ActionRead)
	page, err := s.store.List(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := listPage{Items: make([]replicationJSON, len(page.Items)), NextCursor: orNull(page.Next)}
	for i, rep := range page.Items {
		out.Items[i] = replicationOf(rep, s.cloud)
	}
	writeJSON(w, http.StatusOK, out)
}

// parseFilter reads the listing's query parameters. state may be given
// several times, meaning any of them; the others at most once.
func parseFilter(r *http.Request) (provision.Filter, error) {
	q := r.URL.Query()
	f := provision.Filter{AccountID: q.Get("account_id"), Ticket: q.Get("ticket"), After: q.Get("cursor"), Limit: defaultLimit}
	var ve provision.ValidationError
	for _, name := range []string{"account_id", "ticket", "cursor", "limit"} {
		if len(q[name]) > 1 {
			ve.Errors = append(ve.Errors, provision.FieldError{Field: name, Message: "must be given at most once"})
		}
	}
	for _, v := range q["state"] {
		st := provision.State(v)
		if !st.Valid() {
			names := make([]string, len(provision.States))
			for i, st := range provision.States {
				names[i] = string(st)
			}
			ve.Errors = append(ve.Errors, provision.FieldError{Field: "state", Message: "must be one of " + strings.Join(names, ", ")})
			break
		}
		f.States = append(f.States, st)
	}
	if msg := ticketFilterProblem(f.Ticket); msg != "" {
		ve.Errors = append(ve.Errors, provision.FieldError{Field: "ticket", Message: msg})
	}
	if f.AccountID != "" && !provision.ValidAccountID(f.AccountID) {
		ve.Errors = append(ve.Errors, provision.FieldError{Field: "account_id", Message: "must be a 12-digit AWS account ID"})
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			ve.Errors = append(ve.Errors, provision.FieldError{Field: "limit", Message: "must be a whole number from 1 to 200"})
		}
		f.Limit = n
	}
	if len(ve.Errors) > 0 {
		return f, &ve
	}
	return f, nil
}

// stepList is the body of GET /v1/replications/{id}/steps.
type stepList struct {
	Items []stepJSON `json:"items"`
}

func (s *Server) listSteps(w http.ResponseWriter, r *http.Request) {
	rep, ok := s.authorize(w, r, authz.ActionRead)
	if !ok {
		return
	}
	steps, err := s.store.Steps(r.Context(), rep.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := stepList{Items: make([]stepJSON, len(steps))}
	for i, st := range steps {
		out.Items[i] = stepOf(st)
	}
	writeJSON(w, http.StatusOK, out)
}

// cancelReplication cancels a request awaiting approval or pending at once
// (200) and asks a running one to stop after its current step (202).
func (s *Server) cancelReplication(w http.ResponseWriter, r *http.Request) {
	rep, ok := s.authorize(w, r, authz.ActionCancel)
	if !ok {
		return
	}
	rep, err := s.store.Cancel(r.Context(), rep.ID, callerFrom(r.Context()))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	status := http.StatusOK
	if rep.State != provision.StateCancelled {
		status = http.StatusAccepted
	}
	writeJSON(w, status, replicationOf(rep, s.cloud))
}

// retryReplication resumes a failed request from its failed step.
func (s *Server) retryReplication(w http.ResponseWriter, r *http.Request) {
	rep, ok := s.authorize(w, r, authz.ActionRetry)
	if !ok {
		return
	}
	rep, err := s.store.Retry(r.Context(), rep.ID, callerFrom(r.Context()))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, replicationOf(rep, s.cloud))
}

// deprovisionReplication removes what a finished request added; asking
// again while it runs, or after, answers the request as it is.
func (s *Server) deprovisionReplication(w http.ResponseWriter, r *http.Request) {
	rep, ok := s.authorize(w, r, authz.ActionDeprovision)
	if !ok {
		return
	}
	rep, err := s.store.Deprovision(r.Context(), rep.ID, callerFrom(r.Context()))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, replicationOf(rep, s.cloud))
}

// approveReplication gives the destination owner's consent to a request
// awaiting it: it becomes pending, and workers provision it (202).
func (s *Server) approveReplication(w http.ResponseWriter, r *http.Request) {
	rep, ok := s.authorize(w, r, authz.ActionApprove)
	if !ok {
		return
	}
	rep, err := s.store.Approve(r.Context(), rep.ID, callerFrom(r.Context()))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, replicationOf(rep, s.cloud))
}

// maxRejectionReason bounds a rejection's reason, in characters: a sentence
// or two for the requester, not a document.
const maxRejectionReason = 1000

// rejectReplication refuses the destination owner's consent to a request
// awaiting it, with a reason the requester reads: it is rejected for good.
func (s *Server) rejectReplication(w http.ResponseWriter, r *http.Request) {
	rep, ok := s.authorize(w, r, authz.ActionReject)
	if !ok {
		return
	}
	var body rejectBody
	if err := decodeJSON(w, r, &body); err != nil {
		s.fail(w, r, err)
		return
	}
	switch {
	case strings.TrimSpace(body.Reason) == "":
		s.fail(w, r, badRequest("reason", "is required: say why, for the requester"))
		return
	case utf8.RuneCountInString(body.Reason) > maxRejectionReason:
		s.fail(w, r, badRequest("reason", fmt.Sprintf("must be at most %d characters", maxRejectionReason)))
		return
	case provision.HasControl(body.Reason):
		s.fail(w, r, badRequest("reason", "must not contain control characters"))
		return
	}
	rep, err := s.store.Reject(r.Context(), rep.ID, callerFrom(r.Context()), body.Reason)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, replicationOf(rep, s.cloud))
}
