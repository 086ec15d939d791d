// Command server runs bucketbridge: the HTTP API and, as later configured,
// the worker pool, sharing one Postgres database.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/bucketbridge/bucketbridge"
	"github.com/bucketbridge/bucketbridge/internal/api"
	"github.com/bucketbridge/bucketbridge/internal/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bucketbridge:", err)
		os.Exit(1)
	}
}

// config is everything the server reads from its environment.
type config struct {
	DatabaseURL string
	Listen      string
	Cloud       string
	// ShutdownGrace bounds how long in-flight requests may finish on shutdown.
	ShutdownGrace time.Duration
}

// defaultDatabaseURL matches a local Postgres with trust auth.
const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// loadConfig reads environment variables, then flags that override them.
func loadConfig(args []string, getenv func(string) string) (config, error) {
	env := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	cfg := config{
		DatabaseURL: env("DATABASE_URL", defaultDatabaseURL),
		Listen:      env("BB_LISTEN", ":8080"),
		Cloud:       env("BB_CLOUD", "aws"),
	}
	grace, err := time.ParseDuration(env("BB_SHUTDOWN_GRACE", "20s"))
	if err != nil || grace <= 0 {
		return cfg, fmt.Errorf("BB_SHUTDOWN_GRACE: want a positive duration such as 20s, got %q", getenv("BB_SHUTDOWN_GRACE"))
	}
	cfg.ShutdownGrace = grace

	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address to serve HTTP on (BB_LISTEN)")
	fs.StringVar(&cfg.DatabaseURL, "database-url", cfg.DatabaseURL, "Postgres URL (DATABASE_URL)")
	fs.StringVar(&cfg.Cloud, "cloud", cfg.Cloud, "aws or fake (BB_CLOUD)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}

	if u, err := url.Parse(cfg.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return cfg, errors.New("DATABASE_URL: want a postgres:// URL")
	}
	if _, _, err := net.SplitHostPort(cfg.Listen); err != nil {
		return cfg, fmt.Errorf("BB_LISTEN: want host:port such as :8080, got %q", cfg.Listen)
	}
	if cfg.Cloud != "aws" && cfg.Cloud != "fake" {
		return cfg, fmt.Errorf("BB_CLOUD: want aws or fake, got %q", cfg.Cloud)
	}
	return cfg, nil
}

// LogValue masks the database password so the config can be logged.
func (c config) LogValue() slog.Value {
	db := "(unparseable)"
	if u, err := url.Parse(c.DatabaseURL); err == nil {
		db = u.Redacted()
	}
	return slog.GroupValue(
		slog.String("database_url", db),
		slog.String("listen", c.Listen),
		slog.String("cloud", c.Cloud),
		slog.Duration("shutdown_grace", c.ShutdownGrace),
	)
}

// run is the whole server: it returns when ctx is cancelled and everything
// has shut down, or when start-up fails.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	cfg, err := loadConfig(args, getenv)
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "starting", "config", cfg)

	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return err
	}

	handler, err := api.New(api.Config{Store: st, Logger: log, Cloud: cfg.Cloud, OpenAPI: bucketbridge.OpenAPI})
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	log.InfoContext(ctx, "serving", "addr", ln.Addr().String())

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}

	log.Info("shutting down", "grace", cfg.ShutdownGrace.String())
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shut down http: %w", err)
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve http: %w", err)
	}
	log.Info("stopped")
	return nil
}

