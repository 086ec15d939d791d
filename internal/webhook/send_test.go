package webhook_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/bucketbridge/bucketbridge/internal/webhook"
)

// newSecret makes a fresh whsec_ secret, as an operator would with
// "echo whsec_$(openssl rand -base64 32)".
func newSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	rand.Read(b)
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

func newSender(t *testing.T, cfg webhook.SenderConfig) *webhook.Sender {
	t.Helper()
	if cfg.Guard == nil {
		cfg.Guard = guard(t, "127.0.0.1/32")
	}
	if cfg.Signer == nil {
		s, err := webhook.NewSigner(newSecret(t))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Signer = s
	}
	s, err := webhook.NewSender(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func delivery(url string) webhook.Delivery {
	return webhook.Delivery{
		ID:      "0190a0b1-2c3d-7e4f-8a9b-0c1d2e3f4a5b",
		URL:     url,
		Type:    webhook.EventSucceeded,
		Payload: []byte(`{"type":"replication.succeeded","timestamp":"2026-01-02T03:04:05.000006Z","data":{"id":"r1","state":"succeeded"}}`),
	}
}

func TestNewSignerRefusesUnusableSecrets(t *testing.T) {
	t.Parallel()
	short := "whsec_" + base64.StdEncoding.EncodeToString([]byte("too short"))
	for _, secrets := range []string{"", "   ", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_%%%%", short, newSecret(t) + " " + short} {
		if _, err := webhook.NewSigner(secrets); err == nil {
			t.Errorf("NewSigner(%q) accepted it", secrets)
		}
	}
}

func TestTheLibrarysVerifierAcceptsEverySecretsSignature(t *testing.T) {
	t.Parallel()
	oldSecret, nextSecret := newSecret(t), newSecret(t)
	// During a rotation the server signs with both; each receiver knows one.
	signer, err := webhook.NewSigner(oldSecret + "  " + nextSecret)
	if err != nil {
		t.Fatal(err)
	}
	var verified atomic.Int32
	verifierFor := func(secret string) http.HandlerFunc {
		wh, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			t.Fatal(err)
		}
		return func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if err := wh.Verify(body, r.Header); err != nil {
				http.Error(w, err.Error(), http.StatusUnauthorized)
				return
			}
			if r.Header.Get("Content-Type") != "application/json" {
				http.Error(w, "content type", http.StatusUnsupportedMediaType)
				return
			}
			verified.Add(1)
			w.WriteHeader(http.StatusNoContent)
		}
	}
	sender := newSender(t, webhook.SenderConfig{Signer: signer})
	for name, secret := range map[string]string{"old secret": oldSecret, "new secret": nextSecret} {
		srv := httptest.NewServer(verifierFor(secret))
		defer srv.Close()
		res := sender.Send(context.Background(), delivery(srv.URL+"/hook"), time.Now())
		if !res.Delivered() {
			t.Errorf("receiver knowing the %s: %d %s", name, res.StatusCode, res.Describe())
		}
	}
	// A receiver with a secret the server does not have refuses it.
	srv := httptest.NewServer(verifierFor(newSecret(t)))
	defer srv.Close()
	if res := sender.Send(context.Background(), delivery(srv.URL+"/hook"), time.Now()); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("receiver with an unknown secret answered %d %s, want 401", res.StatusCode, res.Describe())
	}
	if verified.Load() != 2 {
		t.Fatalf("%d verified deliveries, want 2", verified.Load())
	}

	// The header holds one v1 signature per secret, in the order configured.
	sig, err := signer.Sign("msg_1", time.Unix(1700000000, 0), []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if parts := strings.Split(sig, " "); len(parts) != 2 || !strings.HasPrefix(parts[0], "v1,") || !strings.HasPrefix(parts[1], "v1,") {
		t.Fatalf("signature header %q, want two v1 signatures", sig)
	}
}

func TestSendSendsTheStandardHeadersAndTheBodyUnchanged(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	signer, err := webhook.NewSigner(secret)
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		method, id, ts string
		body           []byte
	}
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), body}
	}))
	defer srv.Close()
	d := delivery(srv.URL + "/hook")
	at := time.Unix(1767323045, 0)
	res := newSender(t, webhook.SenderConfig{Signer: signer}).Send(context.Background(), d, at)
	if !res.Delivered() {
		t.Fatalf("Send: %d %s", res.StatusCode, res.Describe())
	}
	s := <-got
	if s.method != http.MethodPost || s.id != d.ID || s.ts != "1767323045" || string(s.body) != string(d.Payload) {
		t.Fatalf("receiver saw %s id=%q ts=%q body=%s", s.method, s.id, s.ts, s.body)
	}
}

func TestSendClassifiesAnswers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status          int
		delivered, gone bool
	}{
		{200, true, false}, {201, true, false}, {202, true, false}, {204, true, false}, {299, true, false},
		{410, false, true},
		{400, false, false}, {401, false, false}, {404, false, false}, {409, false, false}, {429, false, false},
		{500, false, false}, {502, false, false}, {503, false, false},
		{301, false, false}, {302, false, false}, {304, false, false},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(tc.status)
		}))
		res := newSender(t, webhook.SenderConfig{}).Send(context.Background(), delivery(srv.URL), time.Now())
		srv.Close()
		if res.StatusCode != tc.status || res.Delivered() != tc.delivered || res.Gone() != tc.gone {
			t.Errorf("answer %d: got status %d delivered %v gone %v (%v)", tc.status, res.StatusCode, res.Delivered(), res.Gone(), res.Err)
		}
		if tc.delivered != (res.Describe() == "") {
			t.Errorf("answer %d: Describe() = %q", tc.status, res.Describe())
		}
	}
}

func TestSendFollowsNoRedirect(t *testing.T) {
	t.Parallel()
	var followed atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) { followed.Add(1) })
	for _, code := range []int{301, 302, 303, 307, 308} {
		mux.HandleFunc("/"+strconv.Itoa(code), func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", code)
		})
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	sender := newSender(t, webhook.SenderConfig{})
	for _, code := range []int{301, 302, 303, 307, 308} {
		res := sender.Send(context.Background(), delivery(srv.URL+"/"+strconv.Itoa(code)), time.Now())
		if res.Delivered() || res.StatusCode != code {
			t.Errorf("redirect %d: delivered %v status %d", code, res.Delivered(), res.StatusCode)
		}
		if want := "redirect to /elsewhere not followed"; !strings.Contains(res.Describe(), want) {
			t.Errorf("redirect %d described as %q, want it to say %q", code, res.Describe(), want)
		}
	}
	if n := followed.Load(); n != 0 {
		t.Fatalf("redirect target called %d times", n)
	}
}

func TestSendReadsAtMost64KiBOfTheAnswer(t *testing.T) {
	t.Parallel()
	var written atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status := http.StatusOK
		if r.URL.Path == "/fail" {
			status = http.StatusInternalServerError
		}
		w.WriteHeader(status)
		chunk := []byte(strings.Repeat("x", 32<<10))
		// Up to 64 MiB, until the sender hangs up.
		for range 2048 {
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	sender := newSender(t, webhook.SenderConfig{})
	res := sender.Send(context.Background(), delivery(srv.URL+"/ok"), time.Now())
	if !res.Delivered() || len(res.Body) != webhook.MaxResponseBody {
		t.Fatalf("delivered %v, read %d bytes (%v), want %d", res.Delivered(), len(res.Body), res.Err, webhook.MaxResponseBody)
	}
	res = sender.Send(context.Background(), delivery(srv.URL+"/fail"), time.Now())
	if len(res.Body) != webhook.MaxResponseBody {
		t.Fatalf("read %d bytes of a failed answer, want %d", len(res.Body), webhook.MaxResponseBody)
	}
	// What is recorded of an answer stays short.
	if d := res.Describe(); !strings.HasPrefix(d, "HTTP 500: xxx") || len(d) > 300 {
		t.Fatalf("Describe() is %d bytes: %.80q…", len(d), d)
	}
}

func TestSendGivesUpAtTheTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	res := newSender(t, webhook.SenderConfig{Timeout: 100 * time.Millisecond}).Send(context.Background(), delivery(srv.URL), time.Now())
	if !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Fatalf("Send to a receiver that never answers: %v, want a deadline error", res.Err)
	}
	if strings.Contains(res.Describe(), srv.URL) {
		t.Fatalf("recorded error %q repeats the URL", res.Describe())
	}
}

func TestSendRefusesANameThatResolvesToAForbiddenAddress(t *testing.T) {
	t.Parallel()
	// The receiver listens on 127.0.0.1, but the name's resolver answers a
	// forbidden address: nothing may be sent.
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	defer srv.Close()
	port := srv.Listener.Addr().String()
	port = port[strings.LastIndex(port, ":"):]
	resolvesTo := func(addr string) webhook.LookupFunc {
		return func(context.Context, string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr(addr)}, nil
		}
	}
	for _, tc := range []struct {
		name, allow, url string
		addrs            []string
	}{
		{"unlisted name", "127.0.0.1/32", "https://hooks.example.com" + port + "/hook", forgedAddresses},
		{"listed name", "127.0.0.1/32, hooks.example.com", "http://hooks.example.com" + port + "/hook", alwaysRefusedAddresses},
	} {
		g := guard(t, tc.allow)
		for _, addr := range tc.addrs {
			res := newSender(t, webhook.SenderConfig{Guard: g, LookupFunc: resolvesTo(addr)}).
				Send(context.Background(), delivery(tc.url), time.Now())
			var ae *webhook.AddressError
			if !errors.As(res.Err, &ae) {
				t.Errorf("%s resolved to %s: %v (status %d), want an *AddressError", tc.name, addr, res.Err, res.StatusCode)
			}
		}
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("receiver called %d times", n)
	}
	// The listed name resolving to the allowed address is delivered.
	res := newSender(t, webhook.SenderConfig{Guard: guard(t, "127.0.0.1/32, hooks.example.com"), LookupFunc: resolvesTo("127.0.0.1")}).
		Send(context.Background(), delivery("http://hooks.example.com"+port+"/hook"), time.Now())
	if !res.Delivered() || calls.Load() != 1 {
		t.Fatalf("allowed address: delivered %v (%v), receiver called %d times, want once", res.Delivered(), res.Err, calls.Load())
	}
}

func TestSendRechecksTheURLAgainstTheCurrentAllowlist(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	// Accepted when created under an allowlist that no longer names it.
	res := newSender(t, webhook.SenderConfig{Guard: guard(t, "")}).Send(context.Background(), delivery(srv.URL), time.Now())
	var ue *webhook.URLError
	if !errors.As(res.Err, &ue) {
		t.Fatalf("Send = %v, want a *URLError", res.Err)
	}
}

func TestSendOverHTTPS(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	// The refused handshake below is expected; keep it out of the output.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	sender := newSender(t, webhook.SenderConfig{TLSConfig: &tls.Config{RootCAs: roots}})
	if res := sender.Send(context.Background(), delivery(srv.URL), time.Now()); !res.Delivered() {
		t.Fatalf("https: %d %v", res.StatusCode, res.Err)
	}
	// Without trusting the receiver's certificate nothing is delivered.
	res := newSender(t, webhook.SenderConfig{}).Send(context.Background(), delivery(srv.URL), time.Now())
	if res.Delivered() || res.Err == nil {
		t.Fatalf("untrusted certificate: delivered %v, err %v", res.Delivered(), res.Err)
	}
}
