package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/bucketbridge/bucketbridge/internal/store"
	"github.com/bucketbridge/bucketbridge/internal/webhook"
)

// callbackConfig is how the server signs and sends callbacks.
type callbackConfig struct {
	// Signer signs every delivery with each secret of BB_WEBHOOK_SECRET. It
	// is nil when the variable is unset outside dev mode: the server then
	// refuses requests with a callback_url (it could not sign their
	// callbacks) and runs no dispatcher; deliveries already queued wait for
	// a replica that has the secret.
	Signer *webhook.Signer
	// Secrets is how many secrets Signer holds.
	Secrets int
	// DevSecret is set when dev mode signs with devWebhookSecret because
	// BB_WEBHOOK_SECRET is unset.
	DevSecret bool
	// Guard is BB_CALLBACK_ALLOW: which hosts and networks may be called
	// besides public addresses, and which may be called over http.
	Guard *webhook.Guard
	// Backoff is the first retry's delay, doubled for each later one.
	Backoff time.Duration
	// MaxAge is how long a delivery is retried before it fails.
	MaxAge time.Duration
	// Timeout bounds one attempt.
	Timeout time.Duration
}

// devWebhookSecret signs dev mode's callbacks when BB_WEBHOOK_SECRET is
// unset, so that the README's receiver works as printed. It is published,
// so it proves nothing; dev mode provisions nothing real either.
const devWebhookSecret = "whsec_YnVja2V0YnJpZGdlIGRldiBtb2RlIGNhbGxiYWNrcyE="

// loadCallbacks reads the callback settings; duration reads a positive
// duration and records its error.
func loadCallbacks(getenv func(string) string, cloud string, duration func(string, time.Duration) time.Duration) (callbackConfig, []error) {
	var errs []error
	c := callbackConfig{
		Backoff: duration("BB_WEBHOOK_BACKOFF", webhook.DefaultBackoff),
		MaxAge:  duration("BB_WEBHOOK_MAX_AGE", webhook.DefaultMaxAge),
		Timeout: duration("BB_WEBHOOK_TIMEOUT", webhook.DefaultTimeout),
	}
	if c.Backoff > webhook.MaxBackoff {
		errs = append(errs, fmt.Errorf("BB_WEBHOOK_BACKOFF: want at most %s, the longest wait between two attempts, got %s", webhook.MaxBackoff, c.Backoff))
	}
	var err error
	if c.Guard, err = webhook.NewGuard(getenv("BB_CALLBACK_ALLOW")); err != nil {
		errs = append(errs, err)
	}
	secrets := getenv("BB_WEBHOOK_SECRET")
	if secrets == "" && cloud == "fake" {
		secrets, c.DevSecret = devWebhookSecret, true
	}
	if secrets != "" {
		// NewSigner's errors name the variable and the secret's position,
		// never its value.
		if c.Signer, err = webhook.NewSigner(secrets); err != nil {
			errs = append(errs, err)
		}
		c.Secrets = len(strings.Fields(secrets))
	}
	return c, errs
}

// LogValue shows how many secrets there are, never what they are.
func (c callbackConfig) LogValue() slog.Value {
	secrets := fmt.Sprintf("%d set", c.Secrets)
	switch {
	case c.DevSecret:
		secrets = "dev mode's published secret"
	case c.Signer == nil:
		secrets = "unset: requests with a callback_url are refused"
	}
	allow := "(none)"
	if c.Guard != nil && c.Guard.String() != "" {
		allow = c.Guard.String()
	}
	return slog.GroupValue(
		slog.String("webhook_secret", secrets),
		slog.String("callback_allow", allow),
		slog.String("webhook_backoff", c.Backoff.String()),
		slog.String("webhook_max_age", c.MaxAge.String()),
		slog.String("webhook_timeout", c.Timeout.String()),
	)
}

// newDispatcher builds the callbacks' dispatcher on st, woken by
// deliveries queued in any replica until ctx ends. cfg.Signer must be set.
func newDispatcher(ctx context.Context, cfg callbackConfig, st *store.Store, metrics *webhook.Metrics, log *slog.Logger) (*webhook.Dispatcher, error) {
	sender, err := webhook.NewSender(webhook.SenderConfig{Guard: cfg.Guard, Signer: cfg.Signer, Timeout: cfg.Timeout})
	if err != nil {
		return nil, err
	}
	return webhook.NewDispatcher(webhook.DispatcherConfig{
		Outbox:  st,
		Sender:  sender,
		Wake:    st.DeliveriesWake(ctx),
		Backoff: cfg.Backoff,
		MaxAge:  cfg.MaxAge,
		Metrics: metrics,
		Logger:  log,
	})
}
