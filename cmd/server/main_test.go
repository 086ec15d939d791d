package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

// lockedBuffer collects the server's log while it runs.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// writeGrants writes a grants file for the test and returns its path.
func writeGrants(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "authz.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// testServer is run() serving on a free port until the test ends.
type testServer struct {
	base string
	logs *lockedBuffer
	stop func() error
}

// startServer runs the whole server with env as its environment (BB_LISTEN,
// unless env names one, is chosen here) and waits until it is ready. stop cancels it and returns
// what run returned; the test's cleanup stops it too and shows the log when
// the test failed.
func startServer(t *testing.T, env map[string]string) *testServer {
	t.Helper()
	addr := env["BB_LISTEN"]
	if addr == "" {
		addr = freeAddr(t)
		env["BB_LISTEN"] = addr
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &testServer{base: "http://" + addr, logs: &lockedBuffer{}}
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, s.logs) }()
	var once sync.Once
	var runErr error
	s.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(30 * time.Second):
				runErr = errors.New("run did not return within 30 s of cancel")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("run: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", s.logs.String())
		}
	})
	waitFor(t, func() bool {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("run returned before serving: %v", err)
		default:
		}
		resp, err := http.Get(s.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return s
}

func TestRunServesMigratesAndShutsDown(t *testing.T) {
	t.Parallel()
	dbURL := strings.Replace(storetest.NewDatabase(t), "postgres@", "postgres:hunter2@", 1)
	srv := startServer(t, map[string]string{
		"DATABASE_URL":  dbURL,
		"BB_CLOUD":      "fake",
		"BB_API_TOKENS": "portal:0123456789abcdef",
	})
	base := srv.base

	body := `{"source":{"account_id":"111111111111","region":"us-east-1","bucket":"demo-source",
		"kms_key_arn":"arn:aws:kms:us-east-1:111111111111:key/11111111-1111-4111-8111-111111111111"},
		"destination":{"account_id":"222222222222","region":"us-west-2","bucket":"demo-destination",
		"kms_key_arn":"arn:aws:kms:us-west-2:222222222222:key/22222222-2222-4222-8222-222222222222"}}`
	req, _ := http.NewRequest("POST", base+"/v1/replications", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer 0123456789abcdef")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var created struct{ State, Cloud, RequestedBy string }
	json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || created.Cloud != "fake" {
		t.Fatalf("create = %d %+v", resp.StatusCode, created)
	}

	if err := srv.stop(); err != nil {
		t.Fatalf("run returned %v", err)
	}
	out := srv.logs.String()
	if strings.Contains(out, "hunter2") || strings.Contains(out, "0123456789abcdef") {
		t.Errorf("log reveals a secret:\n%s", out)
	}
	if !strings.Contains(out, "dev mode") {
		t.Errorf("log does not warn about dev mode:\n%s", out)
	}
}

func TestConfigAcceptsEveryWayOfGrantingAccess(t *testing.T) {
	t.Parallel()
	for _, env := range []map[string]string{
		{"BB_CLOUD": "fake"},
		{"BB_CLOUD": "fake", "BB_AUTHZ_FILE": "dev/authz.yaml"},
		{"BB_CLOUD": "aws", "BB_EXTERNAL_ID": "x", "BB_API_TOKENS": "p:0123456789abcdef", "BB_AUTHZ_FILE": "authz.yaml"},
		{"BB_CLOUD": "aws", "BB_EXTERNAL_ID": "x", "BB_API_TOKENS": "p:0123456789abcdef", "BB_AUTHZ": "allow-all-tokens-as-admin"},
		// Identity provider users alone, without static tokens.
		{"BB_CLOUD": "aws", "BB_EXTERNAL_ID": "x", "BB_OIDC_ISSUER": "https://idp.example.com", "BB_OIDC_AUDIENCE": "bb",
			"BB_AUTHZ_FILE": "authz.yaml"},
	} {
		if _, err := loadConfig(nil, func(k string) string { return env[k] }); err != nil {
			t.Errorf("env %v: %v", env, err)
		}
	}
	cfg, err := loadConfig(nil, func(k string) string { return map[string]string{"BB_CLOUD": "fake"}[k] })
	if err != nil || !cfg.DevTokens || cfg.Tokens["alice-token"] != "alice" || cfg.Tokens["bob-token"] != "bob" || cfg.Tokens[devToken] != "dev" {
		t.Errorf("dev mode without BB_API_TOKENS accepts %v (%v); want the README's dev, alice and bob tokens", cfg.Tokens, err)
	}
}

func TestConfigErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"BB_CLOUD": "gcp"}, "BB_CLOUD"},
		{map[string]string{"BB_CLOUD": "aws"}, "BB_API_TOKENS"},
		{map[string]string{"BB_API_TOKENS": "portal:short"}, "BB_API_TOKENS"},
		{map[string]string{"BB_LISTEN": "8080", "BB_API_TOKENS": "p:0123456789abcdef"}, "BB_LISTEN"},
		{map[string]string{"DATABASE_URL": "mysql://x", "BB_API_TOKENS": "p:0123456789abcdef"}, "DATABASE_URL"},
		{map[string]string{"BB_SHUTDOWN_GRACE": "soon", "BB_API_TOKENS": "p:0123456789abcdef"}, "BB_SHUTDOWN_GRACE"},
		{map[string]string{"BB_CLOUD": "aws", "BB_API_TOKENS": "p:0123456789abcdef", "BB_EXTERNAL_ID": "x"}, "BB_AUTHZ_FILE"},
		{map[string]string{"BB_AUTHZ": "yes"}, "BB_AUTHZ"},
		{map[string]string{"BB_AUTHZ": "allow-all-tokens-as-admin", "BB_AUTHZ_FILE": "dev/authz.yaml"}, "BB_AUTHZ"},
		{map[string]string{"BB_AUTHZ": "allow-all-tokens-as-admin", "BB_OIDC_ISSUER": "https://idp.example.com",
			"BB_OIDC_AUDIENCE": "bb"}, "BB_AUTHZ"},
		{map[string]string{"BB_OIDC_ISSUER": "https://idp.example.com"}, "BB_OIDC_AUDIENCE"},
		{map[string]string{"BB_OIDC_AUDIENCE": "bb"}, "BB_OIDC_ISSUER"},
		{map[string]string{"BB_OIDC_GROUPS_CLAIM": "roles"}, "BB_OIDC_ISSUER"},
		{map[string]string{"BB_CLOUD": "fake", "BB_FAKE_LATENCY": "fast"}, "BB_FAKE_LATENCY"},
		{map[string]string{"BB_CLOUD": "fake", "BB_FAKE_BENCH_SOURCES": "-3"}, "BB_FAKE_BENCH_SOURCES"},
		{map[string]string{"BB_CLOUD": "aws", "BB_API_TOKENS": "p:0123456789abcdef", "BB_EXTERNAL_ID": "x",
			"BB_AUTHZ": "allow-all-tokens-as-admin", "BB_FAKE_LATENCY": "20ms"}, "BB_FAKE_LATENCY"},
		{map[string]string{"BB_ROLE_PERMISSIONS_BOUNDARY": "no spaces allowed"}, "BB_ROLE_PERMISSIONS_BOUNDARY"},
	} {
		_, err := loadConfig(nil, func(k string) string { return tc.env[k] })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("env %v: error %v, want one naming %s", tc.env, err, tc.want)
		}
	}
}
