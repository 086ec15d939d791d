package api

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bucketbridge/bucketbridge/internal/authz"
	"github.com/bucketbridge/bucketbridge/internal/provision"
)

// acceptingStore stores nothing and accepts everything, so the fuzzer
// exercises decoding and validation alone.
type acceptingStore struct{}

func (acceptingStore) Create(_ context.Context, in provision.NewReplication) (provision.Replication, *provision.Response, error) {
	return provision.Replication{ID: "0190a4c6-0000-7000-8000-000000000000", Spec: in.Spec, State: provision.StatePending}, nil, nil
}
func (acceptingStore) Get(context.Context, string) (provision.Replication, error) {
	return provision.Replication{}, provision.ErrNotFound
}
func (acceptingStore) List(context.Context, provision.Filter) (provision.Page, error) {
	return provision.Page{}, nil
}
func (acceptingStore) Cancel(context.Context, string, string) (provision.Replication, error) {
	return provision.Replication{}, provision.ErrNotFound
}
func (acceptingStore) Retry(context.Context, string, string) (provision.Replication, error) {
	return provision.Replication{}, provision.ErrNotFound
}
func (acceptingStore) Deprovision(context.Context, string, string) (provision.Replication, error) {
	return provision.Replication{}, provision.ErrNotFound
}
func (acceptingStore) Approve(context.Context, string, string) (provision.Replication, error) {
	return provision.Replication{}, provision.ErrNotFound
}
func (acceptingStore) Reject(context.Context, string, string, string) (provision.Replication, error) {
	return provision.Replication{}, provision.ErrNotFound
}
func (acceptingStore) Replay(context.Context, string, string, []byte) (*provision.Response, error) {
	return nil, nil
}
func (acceptingStore) Steps(context.Context, string) ([]provision.Step, error) { return nil, nil }
func (acceptingStore) Events(context.Context, string, int64) ([]provision.Event, error) {
	return nil, nil
}
func (acceptingStore) Ready(context.Context) error { return nil }

// FuzzCreateBody proves no request body makes the API answer 5xx, and that
// every accepted body passed validation.
func FuzzCreateBody(f *testing.F) {
	for _, seed := range []string{
		`{"source":{"account_id":"111111111111","region":"us-east-1","bucket":"demo-source","kms_key_arn":"arn:aws:kms:us-east-1:111111111111:key/11111111-1111-4111-8111-111111111111"},"destination":{"account_id":"222222222222","region":"us-west-2","bucket":"demo-destination","kms_key_arn":"arn:aws:kms:us-west-2:222222222222:key/22222222-2222-4222-8222-222222222222"}}`,
		`{"rule":{"prefix":1}}`, `{"source":null}`, `[]`, `"x"`, `{"callback_url":"https://[::1]/"}`, `{`, ``,
	} {
		f.Add(seed)
	}
	authn, err := authz.NewAuthenticator(map[string]string{"t": "fuzzer"}, nil)
	if err != nil {
		f.Fatal(err)
	}
	s, err := New(Config{Store: acceptingStore{}, Authenticator: authn, Grants: authz.Fixed(authz.AllowAll()),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, "/v1/replications", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer t")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("body %q answered %d: %s", body, rec.Code, rec.Body)
		}
		if rec.Code == http.StatusAccepted && !strings.Contains(rec.Body.String(), `"account_id"`) {
			t.Fatalf("accepted a body without an account: %q", body)
		}
	})
}
