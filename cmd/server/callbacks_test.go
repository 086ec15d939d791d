package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/bucketbridge/bucketbridge/internal/webhook"
)

// newSecret makes a Standard Webhooks secret as the README says to.
func newSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

func TestCallbackSettingsDefaultsAndErrors(t *testing.T) {
	t.Parallel()
	const token = "p:0123456789abcdef"
	load := func(env map[string]string) (config, error) {
		return loadConfig(nil, func(k string) string { return env[k] })
	}

	cfg, err := load(map[string]string{"BB_CLOUD": "aws", "BB_API_TOKENS": token, "BB_EXTERNAL_ID": "x", "BB_AUTHZ": "allow-all-tokens-as-admin"})
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Callbacks
	if c.Backoff != 5*time.Second || c.MaxAge != 24*time.Hour || c.Timeout != 10*time.Second {
		t.Errorf("defaults: backoff %s, max age %s, timeout %s; want 5s, 24h, 10s", c.Backoff, c.MaxAge, c.Timeout)
	}
	if c.Signer != nil || c.DevSecret {
		t.Error("without BB_WEBHOOK_SECRET outside dev mode, callbacks must be off")
	}
	if cfg, err := load(map[string]string{"BB_CLOUD": "fake"}); err != nil || cfg.Callbacks.Signer == nil || !cfg.Callbacks.DevSecret {
		t.Errorf("dev mode without BB_WEBHOOK_SECRET: signer %v dev %v err %v; want the dev secret", cfg.Callbacks.Signer, cfg.Callbacks.DevSecret, err)
	}
	two := newSecret(t) + "  " + newSecret(t)
	cfg, err = load(map[string]string{"BB_API_TOKENS": token, "BB_EXTERNAL_ID": "x", "BB_AUTHZ": "allow-all-tokens-as-admin", "BB_WEBHOOK_SECRET": two,
		"BB_CALLBACK_ALLOW": "10.20.0.0/16, tickets.corp.example", "BB_WEBHOOK_BACKOFF": "250ms",
		"BB_WEBHOOK_MAX_AGE": "1h", "BB_WEBHOOK_TIMEOUT": "3s"})
	if err != nil {
		t.Fatal(err)
	}
	c = cfg.Callbacks
	if c.Signer == nil || c.Secrets != 2 || c.Backoff != 250*time.Millisecond || c.MaxAge != time.Hour || c.Timeout != 3*time.Second ||
		c.Guard.String() != "10.20.0.0/16,tickets.corp.example" {
		t.Errorf("settings read as %+v", c)
	}

	// The log says how many secrets, never which.
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("starting", "config", cfg)
	for _, s := range strings.Fields(two) {
		if strings.Contains(logged.String(), s) || strings.Contains(logged.String(), strings.TrimPrefix(s, "whsec_")[:12]) {
			t.Errorf("the log shows a webhook secret: %s", logged.String())
		}
	}
	for _, want := range []string{`"webhook_secret":"2 set"`, `"callback_allow":"10.20.0.0/16,tickets.corp.example"`, `"webhook_backoff":"250ms"`} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("the log lacks %s: %s", want, logged.String())
		}
	}

	tooShort := "whsec_" + base64.StdEncoding.EncodeToString([]byte("sixteen bytes!!!"))
	for _, tc := range []struct {
		key, value string
	}{
		{"BB_WEBHOOK_SECRET", "hunter2hunter2hunter2hunter2"},
		{"BB_WEBHOOK_SECRET", tooShort},
		{"BB_WEBHOOK_SECRET", newSecret(t) + " whsec_not*base64"},
		{"BB_CALLBACK_ALLOW", "10.20.0.1/16"},
		{"BB_CALLBACK_ALLOW", "tickets..corp"},
		{"BB_WEBHOOK_BACKOFF", "soon"},
		{"BB_WEBHOOK_BACKOFF", "2h"},
		{"BB_WEBHOOK_MAX_AGE", "-1h"},
		{"BB_WEBHOOK_TIMEOUT", "0s"},
	} {
		_, err := load(map[string]string{"BB_API_TOKENS": token, "BB_EXTERNAL_ID": "x", tc.key: tc.value})
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s=%q: error %v, want one naming %s", tc.key, tc.value, err, tc.key)
			continue
		}
		if tc.key == "BB_WEBHOOK_SECRET" && strings.Contains(err.Error(), strings.TrimPrefix(tc.value, "whsec_")[:8]) {
			t.Errorf("the error about BB_WEBHOOK_SECRET shows the secret: %v", err)
		}
	}
}

// The dev secret is a real one, so dev mode signs like any other server.
func TestDevWebhookSecretSigns(t *testing.T) {
	t.Parallel()
	s, err := webhook.NewSigner(devWebhookSecret)
	if err != nil {
		t.Fatal(err)
	}
	if sig, err := s.Sign("id", time.Unix(1, 0), []byte("{}")); err != nil || !strings.HasPrefix(sig, "v1,") {
		t.Fatal(fmt.Sprint(sig, err))
	}
}
