package webhook

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// The Standard Webhooks headers every delivery carries.
// https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
const (
	HeaderID        = standardwebhooks.HeaderWebhookID
	HeaderTimestamp = standardwebhooks.HeaderWebhookTimestamp
	HeaderSignature = standardwebhooks.HeaderWebhookSignature
)

// minSecretBytes is the shortest secret accepted: Standard Webhooks asks
// for secrets of 24 to 64 random bytes.
const minSecretBytes = 24

// Signer signs deliveries with every configured secret, so that secrets can
// be rotated: add the new secret, let receivers switch to it, then remove
// the old one. A receiver that knows any one of them accepts the delivery.
type Signer struct {
	hooks []*standardwebhooks.Webhook
}

// NewSigner parses secrets, the value of BB_WEBHOOK_SECRET: one or more
// "whsec_"-prefixed base64 secrets separated by spaces.
func NewSigner(secrets string) (*Signer, error) {
	s := &Signer{}
	for i, secret := range strings.Fields(secrets) {
		b64, ok := strings.CutPrefix(secret, "whsec_")
		if !ok {
			return nil, fmt.Errorf("BB_WEBHOOK_SECRET: secret %d must start with whsec_ (make one with: echo whsec_$(openssl rand -base64 32))", i+1)
		}
		key, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("BB_WEBHOOK_SECRET: secret %d is not base64 after whsec_: %w", i+1, err)
		}
		if len(key) < minSecretBytes {
			return nil, fmt.Errorf("BB_WEBHOOK_SECRET: secret %d has %d bytes, fewer than %d (make one with: echo whsec_$(openssl rand -base64 32))", i+1, len(key), minSecretBytes)
		}
		wh, err := standardwebhooks.NewWebhookRaw(key)
		if err != nil {
			return nil, fmt.Errorf("BB_WEBHOOK_SECRET: secret %d: %w", i+1, err)
		}
		s.hooks = append(s.hooks, wh)
	}
	if len(s.hooks) == 0 {
		return nil, errors.New("BB_WEBHOOK_SECRET must hold at least one whsec_ secret")
	}
	return s, nil
}

// Sign returns the webhook-signature header for a delivery: one
// "v1,<base64 HMAC-SHA256 of id.timestamp.body>" per secret, separated by
// spaces.
func (s *Signer) Sign(id string, at time.Time, body []byte) (string, error) {
	sigs := make([]string, len(s.hooks))
	for i, wh := range s.hooks {
		sig, err := wh.Sign(id, at, body)
		if err != nil {
			return "", fmt.Errorf("sign delivery %s: %w", id, err)
		}
		sigs[i] = sig
	}
	return strings.Join(sigs, " "), nil
}
