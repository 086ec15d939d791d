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
	"slices"
	"strings"
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
	// Tokens authenticate API callers: token → caller name (BB_API_TOKENS,
	// "name:token,name:token").
	Tokens api.Tokens
	// DevToken is set when dev mode made up a token because none was given.
	DevToken bool
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
	if cfg.Tokens, err = parseTokens(getenv("BB_API_TOKENS")); err != nil {
		return cfg, err
	}

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
	if len(cfg.Tokens) == 0 {
		if cfg.Cloud != "fake" {
			return cfg, errors.New("BB_API_TOKENS: set at least one name:token pair; the API is never served unauthenticated")
		}
		cfg.Tokens, cfg.DevToken = api.Tokens{devToken: "dev"}, true
	}
	return cfg, nil
}

// devToken is the API token of dev mode (BB_CLOUD=fake) when BB_API_TOKENS
// is unset, so the README's examples work as printed.
const devToken = "dev-token"

// minTokenLength keeps guessable tokens out of production.
const minTokenLength = 16

// parseTokens reads "name:token,name:token".
func parseTokens(v string) (api.Tokens, error) {
	tokens := api.Tokens{}
	for pair := range strings.SplitSeq(v, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		name, token, ok := strings.Cut(pair, ":")
		if !ok || name == "" || len(token) < minTokenLength {
			return nil, fmt.Errorf("BB_API_TOKENS: want name:token pairs with tokens of at least %d characters", minTokenLength)
		}
		if _, dup := tokens[token]; dup {
			return nil, fmt.Errorf("BB_API_TOKENS: two callers share a token")
		}
		tokens[token] = name
	}
	return tokens, nil
}

// LogValue masks the database password so the config can be logged.
func (c config) LogValue() slog.Value {
	db := "(unparseable)"
	if u, err := url.Parse(c.DatabaseURL); err == nil {
		db = u.Redacted()
	}
	callers := make([]string, 0, len(c.Tokens))
	for _, name := range c.Tokens {
		callers = append(callers, name)
	}
	slices.Sort(callers)
	return slog.GroupValue(
		slog.String("database_url", db),
		slog.Any("api_callers", callers),
		slog.String("listen", c.Listen),
		slog.String("cloud", c.Cloud),
		slog.String("shutdown_grace", c.ShutdownGrace.String()),
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
	if cfg.Cloud == "fake" {
		log.WarnContext(ctx, "dev mode: BB_CLOUD=fake provisions an in-memory AWS; nothing real is created")
	}
	if cfg.DevToken {
		log.WarnContext(ctx, "dev mode: BB_API_TOKENS is unset, so the API accepts the token "+devToken)
	}

	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return err
	}

	handler, err := api.New(api.Config{Store: st, Logger: log, Cloud: cfg.Cloud, OpenAPI: bucketbridge.OpenAPI, Tokens: cfg.Tokens})
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
