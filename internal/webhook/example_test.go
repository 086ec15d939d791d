package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/bucketbridge/bucketbridge/internal/webhook"
)

// A receiver checks the signature with any Standard Webhooks library and
// drops duplicates by webhook-id: delivery is at least once.
func Example_receiver() {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // one of the secrets in BB_WEBHOOK_SECRET

	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		panic(err)
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	receiver := func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read body", http.StatusBadRequest)
			return
		}
		if err := wh.Verify(body, r.Header); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		mu.Lock()
		dup := seen[r.Header.Get("webhook-id")]
		seen[r.Header.Get("webhook-id")] = true
		mu.Unlock()
		if dup {
			return // already handled; answer 2xx so it is not sent again
		}
		var event struct {
			Type string `json:"type"`
			Data struct {
				ID    string `json:"id"`
				State string `json:"state"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &event); err != nil {
			http.Error(w, "bad payload", http.StatusBadRequest)
			return
		}
		fmt.Printf("%s: request %s is %s\n", event.Type, event.Data.ID, event.Data.State)
	}
	srv := httptest.NewServer(http.HandlerFunc(receiver))
	defer srv.Close()

	// What the dispatcher does for each attempt.
	guard, _ := webhook.NewGuard("127.0.0.1/32")
	signer, _ := webhook.NewSigner(secret)
	sender, _ := webhook.NewSender(webhook.SenderConfig{Guard: guard, Signer: signer})
	d := webhook.Delivery{
		ID:      "01a23784-071c-776e-b74e-0b8080db35dc",
		URL:     srv.URL + "/bucketbridge",
		Payload: []byte(`{"type":"replication.succeeded","timestamp":"2026-01-02T03:04:05.000006Z","data":{"id":"01a23784-0000-7000-8000-000000000001","state":"succeeded"}}`),
	}
	for range 2 { // a retry after a lost answer
		res := sender.Send(context.Background(), d, time.Now())
		fmt.Println(res.StatusCode, res.Delivered())
	}
	// Output:
	// replication.succeeded: request 01a23784-0000-7000-8000-000000000001 is succeeded
	// 200 true
	// 200 true
}
