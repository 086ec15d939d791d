package webhook

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// DefaultTimeout bounds one attempt when BB_WEBHOOK_TIMEOUT is not set.
const DefaultTimeout = 10 * time.Second

// MaxResponseBody is how much of a receiver's answer is read; the rest is
// never downloaded.
const MaxResponseBody = 64 << 10

// userAgent names the sender to receivers.
const userAgent = "bucketbridge-webhooks/1"

// SenderConfig configures a Sender.
type SenderConfig struct {
	// Guard decides which addresses may be called. Required.
	Guard *Guard
	// Signer signs every attempt. Required.
	Signer *Signer
	// Timeout bounds one attempt, connecting and reading the answer
	// included (BB_WEBHOOK_TIMEOUT, default DefaultTimeout).
	Timeout time.Duration
	// LookupFunc resolves host names; the system's resolver when nil.
	LookupFunc LookupFunc
	// TLSConfig is used for https, e.g. to trust a private CA; the
	// system's roots when nil.
	TLSConfig *tls.Config
}

// Sender makes single delivery attempts. It is safe for concurrent use.
type Sender struct {
	cfg    SenderConfig
	client *http.Client
}

// NewSender validates cfg and builds the HTTP client every attempt uses.
func NewSender(cfg SenderConfig) (*Sender, error) {
	if cfg.Guard == nil || cfg.Signer == nil {
		return nil, errors.New("webhook: SenderConfig needs Guard and Signer")
	}
	if cfg.Timeout < 0 {
		return nil, errors.New("webhook: Timeout must not be negative")
	}
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultTimeout)
	transport := &http.Transport{
		// No proxy: a proxy would make the connection the guard checks
		// the proxy's, not the receiver's.
		Proxy:               nil,
		DialContext:         cfg.Guard.DialContextFunc(cfg.LookupFunc),
		TLSClientConfig:     cfg.TLSConfig,
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: cfg.Timeout,
		// The answer's headers count against the same budget as its body.
		MaxResponseHeaderBytes: MaxResponseBody,
		MaxIdleConns:           64,
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        90 * time.Second,
	}
	client := &http.Client{
		Transport: transport,
		// A redirect is a failed attempt: following it would send the
		// signed payload to an address nobody checked when the request
		// was created.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Sender{cfg: cfg, client: client}, nil
}

// Result is the outcome of one attempt.
type Result struct {
	// StatusCode is the receiver's HTTP status, 0 when none came.
	StatusCode int
	// Body is the start of the receiver's answer, at most MaxResponseBody bytes.
	Body []byte
	// Location is where a 3xx answer pointed; it was not followed.
	Location string
	// Err is why no answer came (refused address, timeout, connection
	// error), or nil.
	Err error
	// Duration is how long the attempt took.
	Duration time.Duration
}

// Delivered reports whether the receiver took the delivery: any 2xx.
func (r Result) Delivered() bool { return r.Err == nil && r.StatusCode >= 200 && r.StatusCode <= 299 }

// Gone reports whether the receiver answered 410 Gone, which stops the
// retries at once.
func (r Result) Gone() bool { return r.Err == nil && r.StatusCode == http.StatusGone }

// Describe says in one line why an attempt failed, "" when it did not.
func (r Result) Describe() string {
	switch {
	case r.Err != nil:
		return r.Err.Error()
	case r.Delivered():
		return ""
	}
	msg := "HTTP " + strconv.Itoa(r.StatusCode)
	if r.Location != "" {
		msg += ", redirect to " + printable([]byte(r.Location), 200) + " not followed"
	}
	if body := printable(r.Body, 200); body != "" {
		msg += ": " + body
	}
	return msg
}

// printable returns the start of b, at most n runes, on one line.
func printable(b []byte, n int) string {
	s := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return ' '
		}
		return r
	}, string(b))
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		s = string(r[:n]) + "…"
	}
	return s
}

// Send makes one attempt to deliver d, signed as sent at at: it POSTs the
// payload to d.URL through the guard, follows no redirect, and reads at
// most MaxResponseBody bytes of the answer.
func (s *Sender) Send(ctx context.Context, d Delivery, at time.Time) Result {
	start := time.Now()
	r := s.send(ctx, d, at)
	r.Duration = time.Since(start)
	return r
}

func (s *Sender) send(ctx context.Context, d Delivery, at time.Time) Result {
	// The allowlist may have changed since the URL was accepted.
	if err := s.cfg.Guard.CheckURL(d.URL); err != nil {
		return Result{Err: err}
	}
	sig, err := s.cfg.Signer.Sign(d.ID, at, d.Payload)
	if err != nil {
		return Result{Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(d.Payload))
	if err != nil {
		return Result{Err: fmt.Errorf("build request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set(HeaderID, d.ID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(at.Unix(), 10))
	req.Header.Set(HeaderSignature, sig)
	resp, err := s.client.Do(req)
	if err != nil {
		// The URL is the request's own and may carry a token; it is not
		// repeated in every recorded error.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = fmt.Errorf("post: %w", ue.Err)
		}
		return Result{Err: err}
	}
	defer resp.Body.Close()
	// A 2xx counts even when reading its body fails: the receiver said
	// it took the delivery.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBody))
	r := Result{StatusCode: resp.StatusCode, Body: body}
	if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
		r.Location = resp.Header.Get("Location")
	}
	return r
}
