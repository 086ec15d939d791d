package store

import (
	"slices"
	"testing"

	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/webhook"
)

// A receiver hears about every state a request can stop in, and every event
// type the webhook package documents is sent for some state.
func TestEveryStopIsAnnouncedAndEveryEventTypeIsSent(t *testing.T) {
	t.Parallel()
	for _, s := range provision.States {
		if _, ok := announced[s]; s.Terminal() && !ok {
			t.Errorf("state %s is terminal but no callback announces it", s)
		}
	}
	var sent []webhook.EventType
	for s, typ := range announced {
		if !typ.Valid() {
			t.Errorf("state %s is announced as %q, which is not a webhook event type", s, typ)
		}
		if want := webhook.EventType("replication." + string(s)); typ != want {
			t.Errorf("state %s is announced as %s, want %s", s, typ, want)
		}
		sent = append(sent, typ)
	}
	for _, typ := range webhook.EventTypes {
		if !slices.Contains(sent, typ) {
			t.Errorf("event type %s is documented but no state sends it", typ)
		}
	}
}
