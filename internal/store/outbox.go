package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/webhook"
)

// announced maps each state whose entry a request's callback announces to
// the event type that announces it.
var announced = map[provision.State]webhook.EventType{
	provision.StateAwaitingApproval:  webhook.EventAwaitingApproval,
	provision.StateSucceeded:         webhook.EventSucceeded,
	provision.StateFailed:            webhook.EventFailed,
	provision.StateCancelled:         webhook.EventCancelled,
	provision.StateRejected:          webhook.EventRejected,
	provision.StateDeprovisioned:     webhook.EventDeprovisioned,
	provision.StateDeprovisionFailed: webhook.EventDeprovisionFailed,
}

// announcement returns the event type that announces c, and false when c
// is not announced: its state is not one callers hear about, or the
// request has no callback URL.
func announcement(c provision.Change) (webhook.EventType, bool) {
	if c.Replication.CallbackURL == "" {
		return "", false
	}
	typ, ok := announced[c.To]
	return typ, ok
}

// RenderFunc renders a request exactly as the API's GET returns it; a
// callback's data is that rendering at the moment of the transition.
type RenderFunc func(provision.Replication) ([]byte, error)

// outboxHook queues, in the transaction of every announced transition, the
// callback announcing it, with data rendered from the request as the
// transition left it.
func outboxHook(render RenderFunc) Hook {
	return func(ctx context.Context, tx pgx.Tx, c provision.Change) error {
		typ, ok := announcement(c)
		if !ok {
			return nil
		}
		data, err := render(c.Replication)
		if err != nil {
			return fmt.Errorf("render %s for its %s callback: %w", c.Replication.ID, typ, err)
		}
		_, err = enqueueDelivery(ctx, tx, c.Replication.ID, typ, data)
		return err
	}
}

// QueueCallbacks makes every transition into an announced state (succeeded,
// failed, cancelled, deprovisioned, deprovision_failed, and the consent
// states) of a request with a callback URL queue a delivery in the
// transition's own transaction, so that no state change is lost and none
// is announced without having happened; render gives the payload's data.
// Once such a transition has committed, the dispatchers are woken: this
// process's at once, other replicas' by a NOTIFY on DeliveriesChannel.
// Call it before the store is used.
func (s *Store) QueueCallbacks(render RenderFunc) {
	s.OnTransition(outboxHook(render))
	s.AfterTransition(func(c provision.Change) {
		if _, ok := announcement(c); ok {
			s.deliveries.Notify()
		}
	})
}
