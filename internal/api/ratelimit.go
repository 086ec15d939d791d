package api

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/go-chi/httprate"
)

// rateWindow is the window BB_RATE_LIMIT counts requests in.
const rateWindow = time.Minute

// newRateLimiter bounds each caller's mutating requests to perMinute a
// minute, counted in this process; nil when perMinute is 0 (no limit).
func (s *Server) newRateLimiter(perMinute int) *httprate.RateLimiter {
	if perMinute <= 0 {
		return nil
	}
	return httprate.NewRateLimiter(perMinute, rateWindow,
		httprate.WithKeyFuncs(rateKey),
		httprate.WithLimitHandler(func(w http.ResponseWriter, r *http.Request) {
			// httprate has set Retry-After to the window's length.
			s.problem(w, r, &problem{Type: problemTypeBase + "rate-limited", Status: http.StatusTooManyRequests,
				Title: "Too Many Requests",
				Detail: fmt.Sprintf("at most %d changes a minute per caller; wait the seconds in Retry-After, then send it again",
					perMinute)})
		}),
		httprate.WithErrorHandler(func(w http.ResponseWriter, r *http.Request, err error) {
			s.fail(w, r, fmt.Errorf("count request against the rate limit: %w", err))
		}),
	)
}

// rateKey counts requests per authenticated caller. Behind no
// authentication (which the routes never are) it falls back to the
// client's address, so no caller shares another's budget.
func rateKey(r *http.Request) (string, error) {
	if c := callerFrom(r.Context()); c != "" {
		return "caller:" + c, nil
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "addr:" + host, nil
}

// limitChanges is the middleware for every route that changes state
// (create, cancel, retry, deprovision, and any added later): it answers
// 429 with Retry-After once the caller has spent its budget. It must run
// after authenticate, which names the caller.
func (s *Server) limitChanges(next http.Handler) http.Handler {
	if s.limiter == nil {
		return next
	}
	return s.limiter.Handler(next)
}
