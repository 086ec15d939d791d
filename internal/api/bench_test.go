package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"
	"time"

	"github.com/bucketbridge/bucketbridge"
	"github.com/bucketbridge/bucketbridge/internal/api"
	"github.com/bucketbridge/bucketbridge/internal/authz"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

// BenchmarkAPI measures create and read latency over real HTTP and
// Postgres, one request at a time (the rate is whatever one client
// reaches), and reports percentiles.
func BenchmarkAPI(b *testing.B) {
	st := storetest.New(b)
	a, err := api.New(api.Config{Store: st, Cloud: "fake", OpenAPI: bucketbridge.OpenAPI, Authenticator: staticTokens(b),
		Grants: authz.Fixed(authz.AllowAll()),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(a)
	defer srv.Close()
	send := func(method, path string, body []byte) *http.Response {
		req, _ := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+portalToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		return resp
	}
	var ids []string
	n := 0
	measure := func(b *testing.B, do func() int) {
		var lat []time.Duration
		for b.Loop() {
			start := time.Now()
			if status := do(); status >= 300 {
				b.Fatalf("status %d", status)
			}
			lat = append(lat, time.Since(start))
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
	b.Run("create", func(b *testing.B) {
		measure(b, func() int {
			n++
			body, _ := json.Marshal(request(fmt.Sprintf("bench-source-%d", n)))
			resp := send("POST", "/v1/replications", body)
			var out struct{ ID string }
			json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			ids = append(ids, out.ID)
			return resp.StatusCode
		})
	})
	b.Run("read", func(b *testing.B) {
		i := 0
		measure(b, func() int {
			i++
			resp := send("GET", "/v1/replications/"+ids[i%len(ids)], nil)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode
		})
	})
	b.Run("list", func(b *testing.B) {
		measure(b, func() int {
			resp := send("GET", "/v1/replications?limit=50", nil)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode
		})
	})
}
