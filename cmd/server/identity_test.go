package main

import (
	"cmp"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

// TestStartRefusedWithoutUsableCredentials runs the server with
// BB_CLOUD=aws and credentials that cannot work: it refuses to start, at
// once, with a message naming what is wrong, and before it touches the
// database (which here does not exist).
//
// Not parallel: run() loads the AWS configuration from the process
// environment, which the test sets with t.Setenv.
func TestStartRefusedWithoutUsableCredentials(t *testing.T) {
	moto := cmp.Or(os.Getenv("MOTO_URL"), "http://127.0.0.1:5000")
	sts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>`+
			`<Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message></Error>`+
			`<RequestId>4c4a8ec5-0000-0000-0000-000000000000</RequestId></ErrorResponse>`)
	}))
	defer sts.Close()

	for _, tc := range []struct {
		name     string
		endpoint string
		creds    bool
		want     []string
	}{
		{"no credentials", moto, false, []string{"no AWS credentials found", "AWS_ACCESS_KEY_ID"}},
		{"refused credentials", sts.URL, true, []string{"refused the service's AWS credentials", "InvalidClientTokenId", "EnvConfigCredentials"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			motoEnv(t, tc.endpoint)
			if !tc.creds {
				for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
					t.Setenv(k, "")
					os.Unsetenv(k)
				}
			}
			env := map[string]string{
				"DATABASE_URL":   "postgres://postgres@" + freeAddr(t) + "/nothing?sslmode=disable",
				"BB_LISTEN":      freeAddr(t),
				"BB_CLOUD":       "aws",
				"BB_API_TOKENS":  "ops:0123456789abcdef",
				"BB_AUTHZ":       "allow-all-tokens-as-admin",
				"BB_EXTERNAL_ID": "bucketbridge-test",
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			err := run(ctx, nil, func(k string) string { return env[k] }, io.Discard)
			if err == nil {
				t.Fatal("run started without usable credentials")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("run: %v\nwant a message containing %q", err, w)
				}
			}
			if took := time.Since(start); took > identityTimeout {
				t.Errorf("run took %s to refuse, want less than %s", took, identityTimeout)
			}
		})
	}
}

// TestStartLogsTheServiceIdentity: with moto's dummy credentials the server
// starts and logs whose credentials it provisions with.
//
// Not parallel: see TestStartRefusedWithoutUsableCredentials.
func TestStartLogsTheServiceIdentity(t *testing.T) {
	motoEnv(t, cmp.Or(os.Getenv("MOTO_URL"), "http://127.0.0.1:5000"))
	srv := startServer(t, map[string]string{
		"DATABASE_URL":   storetest.NewDatabase(t),
		"BB_CLOUD":       "aws",
		"BB_API_TOKENS":  "ops:0123456789abcdef",
		"BB_AUTHZ":       "allow-all-tokens-as-admin",
		"BB_EXTERNAL_ID": "bucketbridge-test",
	})
	if err := srv.stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	logs := srv.logs.String()
	if !strings.Contains(logs, `"msg":"aws identity","arn":"arn:aws:sts::123456789012:`) {
		t.Errorf("log does not name the service's identity:\n%s", logs)
	}
}
