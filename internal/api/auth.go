package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// Tokens maps bearer tokens to the caller names they authenticate. The
// caller name is recorded as requested_by and scopes Idempotency-Keys.
type Tokens map[string]string

type callerKey struct{}

// callerFrom returns the authenticated caller of a request.
func callerFrom(ctx context.Context) string {
	c, _ := ctx.Value(callerKey{}).(string)
	return c
}

// authenticate admits requests carrying one of the configured bearer tokens.
// Tokens are compared by hash in constant time so their length and content
// do not leak through timing.
func (s *Server) authenticate(next http.Handler) http.Handler {
	type entry struct {
		hash   [sha256.Size]byte
		caller string
	}
	entries := make([]entry, 0, len(s.tokens))
	for token, caller := range s.tokens {
		entries = append(entries, entry{sha256.Sum256([]byte(token)), caller})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if ok && strings.EqualFold(scheme, "Bearer") && token != "" {
			got := sha256.Sum256([]byte(token))
			caller := ""
			for _, e := range entries {
				if subtle.ConstantTimeCompare(got[:], e.hash[:]) == 1 {
					caller = e.caller
				}
			}
			if caller != "" {
				if acc, ok := r.Context().Value(accessKey{}).(*access); ok {
					acc.caller = caller
				}
				next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, caller)))
				return
			}
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="bucketbridge"`)
		s.problem(w, r, &problem{Type: problemTypeBase + "unauthorized", Status: http.StatusUnauthorized,
			Title: "Unauthorized", Detail: "send a valid API token as Authorization: Bearer <token>"})
	})
}
