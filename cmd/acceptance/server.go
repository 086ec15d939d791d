package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// server is a real bucketbridge server the run built and started, on a
// database of its own.
type server struct {
	cmd      *exec.Cmd
	base     string
	token    string
	dir      string
	log      string
	adminURL string
	database string
	out      io.Writer
	exited   chan error
}

// startServer builds ./cmd/server, creates its database and runs it with
// BB_CLOUD=aws, the source profile as its own identity, the run's
// provisioner roles and permissions boundary, until stop.
func startServer(ctx context.Context, s settings, w *world, out io.Writer) (*server, error) {
	dir, err := os.MkdirTemp("", "bb-acceptance-")
	if err != nil {
		return nil, err
	}
	srv := &server{dir: dir, log: filepath.Join(dir, "server.log"), adminURL: s.DatabaseURL, database: "bb_acceptance_" + w.id, out: out,
		token: "acceptance-" + randomID() + randomID()}
	bin := filepath.Join(dir, "bucketbridge-server")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/bucketbridge/bucketbridge/cmd/server")
	build.Stdout, build.Stderr = out, out
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("build the server (run make acceptance from the repository): %w", err)
	}
	conn, err := pgx.Connect(ctx, s.DatabaseURL)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("connect to Postgres at DATABASE_URL (make postgres starts one): %w", err)
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{srv.database}.Sanitize())
	conn.Close(ctx)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("create database %s: %w", srv.database, err)
	}
	dbURL, err := databaseURL(s.DatabaseURL, srv.database)
	if err != nil {
		srv.stop()
		return nil, err
	}
	// A free port of the loopback interface, never a fixed one.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.stop()
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	srv.base = "http://" + addr
	logf, err := os.Create(srv.log)
	if err != nil {
		srv.stop()
		return nil, err
	}
	env := []string{
		"DATABASE_URL=" + dbURL,
		"BB_CLOUD=aws",
		"BB_LISTEN=" + addr,
		"BB_WORKERS=4",
		"BB_PROVISIONER_ROLE=" + w.provisionerRole,
		"BB_EXTERNAL_ID=" + w.externalID,
		"BB_ROLE_PERMISSIONS_BOUNDARY=" + w.boundary,
		"BB_TRUST_CONDITIONS=" + strconv.FormatBool(s.TrustConditions),
		"BB_API_TOKENS=acceptance:" + srv.token,
		"BB_AUTHZ=allow-all-tokens-as-admin",
		"AWS_PROFILE=" + s.SourceProfile,
		"AWS_REGION=" + s.SourceRegion,
	}
	if s.Endpoint != "" {
		env = append(env, "AWS_ENDPOINT_URL="+s.Endpoint)
	}
	// The server gets the run's settings and nothing of the caller's own
	// bucketbridge or AWS settings but where the profiles live.
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "BB_") || k == "DATABASE_URL" || strings.HasPrefix(k, "AWS_") && k != "AWS_CONFIG_FILE" && k != "AWS_SHARED_CREDENTIALS_FILE" {
			continue
		}
		env = append(env, kv)
	}
	srv.cmd = exec.Command(bin)
	srv.cmd.Env, srv.cmd.Stdout, srv.cmd.Stderr = env, logf, logf
	if err := srv.cmd.Start(); err != nil {
		logf.Close()
		srv.stop()
		return nil, fmt.Errorf("start the server: %w", err)
	}
	srv.exited = make(chan error, 1)
	go func() { srv.exited <- srv.cmd.Wait(); logf.Close() }()
	fmt.Fprintf(out, "server started at %s (log %s)\n", srv.base, srv.log)
	err = poll(ctx, time.Minute, func() error {
		select {
		case err := <-srv.exited:
			srv.exited <- err
			return fmt.Errorf("the server exited: %v; its log: %s", err, srv.tail())
		default:
		}
		resp, err := http.Get(srv.base + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz answered %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		srv.stop()
		return nil, fmt.Errorf("the server is not ready: %w", err)
	}
	return srv, nil
}

// tail is the end of the server's log.
func (srv *server) tail() string {
	b, _ := os.ReadFile(srv.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// stop ends the server as SIGTERM does in production, drops its database
// and removes its build.
func (srv *server) stop() {
	if srv.cmd != nil && srv.cmd.Process != nil {
		_ = srv.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-srv.exited:
		case <-time.After(45 * time.Second):
			_ = srv.cmd.Process.Kill()
			<-srv.exited
		}
		srv.cmd = nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, srv.adminURL); err == nil {
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{srv.database}.Sanitize()+" WITH (FORCE)"); err != nil {
			fmt.Fprintf(srv.out, "drop database %s: %v\n", srv.database, err)
		}
		conn.Close(ctx)
	}
	os.RemoveAll(srv.dir)
}

// call sends one API request and decodes the answer.
func (srv *server) call(ctx context.Context, method, path string, body any) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, srv.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+srv.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil && !errors.Is(err, io.EOF) {
		return resp.StatusCode, nil, fmt.Errorf("%s %s: decode the answer: %w", method, path, err)
	}
	return resp.StatusCode, out, nil
}

// waitFor polls a request until it is in state want; another final state
// is an error carrying its last error and steps.
func (srv *server) waitFor(ctx context.Context, id, want string) (map[string]any, error) {
	final := map[string]bool{"succeeded": true, "failed": true, "cancelled": true, "deprovisioned": true, "deprovision_failed": true, "rejected": true}
	for {
		status, r, err := srv.call(ctx, "GET", "/v1/replications/"+id, nil)
		if err != nil {
			return nil, err
		}
		if status != http.StatusOK {
			return nil, fmt.Errorf("GET %s answered %d: %v", id, status, r)
		}
		state, _ := r["state"].(string)
		switch {
		case state == want:
			return r, nil
		case final[state]:
			_, steps, _ := srv.call(ctx, "GET", "/v1/replications/"+id+"/steps", nil)
			b, _ := json.MarshalIndent(steps, "", "  ")
			return r, fmt.Errorf("request %s ended %s, not %s: last error %v\nsteps: %s", id, state, want, r["last_error"], b)
		}
		t := time.NewTimer(5 * time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return r, fmt.Errorf("request %s is still %s: %w", id, state, ctx.Err())
		case <-t.C:
		}
	}
}
