package api

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/bucketbridge/bucketbridge/internal/authz"
)

// Authenticator identifies the caller a bearer token stands for: a static
// API token, or a JWT from the organisation's identity provider. Its errors
// wrap authz.ErrUnknownToken or authz.ErrInvalidToken.
type Authenticator interface {
	Authenticate(ctx context.Context, bearer string) (authz.Identity, error)
}

type identityKey struct{}

// identityFrom returns the authenticated caller of a request.
func identityFrom(ctx context.Context) authz.Identity {
	id, _ := ctx.Value(identityKey{}).(authz.Identity)
	return id
}

// callerFrom returns the name of the authenticated caller, which is recorded
// as requested_by and as the actor of what they do, and scopes their
// Idempotency-Keys.
func callerFrom(ctx context.Context) string { return identityFrom(ctx).Name }

// authenticate admits requests whose bearer token identifies a caller.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
			s.unauthorized(w, r, "send a valid API token or identity provider token as Authorization: Bearer <token>", false)
			return
		}
		id, err := s.authn.Authenticate(r.Context(), token)
		if err != nil {
			if errors.Is(err, authz.ErrInvalidToken) {
				// Why a JWT failed (expired, another audience, an unknown
				// key) helps whoever runs the identity provider; the caller
				// learns only that the token is not accepted.
				s.log.InfoContext(r.Context(), "bearer token refused", "error", err,
					"request_id", middleware.GetReqID(r.Context()))
				s.unauthorized(w, r, "the token is not valid here: it may have expired, or be meant for another audience or issuer", true)
				return
			}
			s.unauthorized(w, r, "send a valid API token or identity provider token as Authorization: Bearer <token>", false)
			return
		}
		if acc, ok := r.Context().Value(accessKey{}).(*access); ok {
			acc.caller = id.Name
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	})
}

// unauthorized answers 401 with the challenge of RFC 6750, section 3;
// invalid says the token was recognised as a JWT but refused.
func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request, detail string, invalid bool) {
	challenge := `Bearer realm="bucketbridge"`
	if invalid {
		challenge += `, error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	s.problem(w, r, &problem{Type: problemTypeBase + "unauthorized", Status: http.StatusUnauthorized,
		Title: "Unauthorized", Detail: detail})
}
