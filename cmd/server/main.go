// Command server runs bucketbridge: the HTTP API, the worker pool that
// provisions requests, and the dispatcher that sends their callbacks,
// sharing one Postgres database. Several replicas may
// share the database; Postgres coordinates them.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/bucketbridge/bucketbridge"
	"github.com/bucketbridge/bucketbridge/internal/api"
	"github.com/bucketbridge/bucketbridge/internal/authz"
	"github.com/bucketbridge/bucketbridge/internal/awsfake"
	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/store"
	"github.com/bucketbridge/bucketbridge/internal/webhook"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bucketbridge:", err)
		os.Exit(1)
	}
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
	if cfg.DevTokens {
		log.WarnContext(ctx, "dev mode: BB_API_TOKENS is unset, so the API accepts the README's dev-mode tokens of dev, alice and bob")
	}
	grants, err := openGrants(ctx, cfg, log)
	if err != nil {
		return err
	}
	authn, err := openAuthenticator(ctx, cfg)
	if err != nil {
		return err
	}
	switch {
	case cfg.Callbacks.DevSecret:
		log.WarnContext(ctx, "dev mode: BB_WEBHOOK_SECRET is unset, so callbacks are signed with the published secret "+devWebhookSecret)
	case cfg.Callbacks.Signer == nil:
		log.WarnContext(ctx, "callbacks are off: BB_WEBHOOK_SECRET is unset, so requests with a callback_url are refused and this replica sends no callbacks")
	}

	// A server without usable AWS credentials stops here, before it
	// touches the database, instead of failing every request later.
	if cfg.Cloud == "aws" && cfg.Workers > 0 {
		if err := logIdentity(ctx, log); err != nil {
			return err
		}
	}

	steps := map[provision.Phase][]provision.StepDef{
		provision.PhaseProvision:   provision.ProvisionSteps(),
		provision.PhaseDeprovision: provision.DeprovisionSteps(),
	}
	st, err := store.Open(ctx, cfg.DatabaseURL, databaseConns(cfg.Workers, steps))
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	if cfg.Workers > 0 && st.MaxConns() < 2 {
		return fmt.Errorf("DATABASE_URL sets pool_max_conns=%d: workers need at least 2 connections (one may wait for a document another replica holds while its step writes its record on the other)", st.MaxConns())
	}
	st.KeepIdempotencyKeys(cfg.IdempotencyTTL)
	log.InfoContext(ctx, "database pool", "max_conns", st.MaxConns())

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newStateCollector(st, log))
	metrics := provision.NewMetrics(reg)
	st.AfterTransition(metrics.Transitioned)

	var cloud *awsfake.Cloud
	if cfg.Cloud == "fake" {
		if cloud, err = openDevCloud(ctx, cfg, st, log); err != nil {
			return err
		}
	}
	sessions, err := openSessions(ctx, cfg, cloud)
	if err != nil {
		return err
	}
	pool, err := provision.NewPool(provision.PoolConfig{
		Store:           st,
		Sessions:        sessions,
		Steps:           steps,
		Workers:         cfg.Workers,
		Lease:           cfg.Lease,
		RequestDeadline: cfg.RequestDeadline,
		ShutdownGrace:   cfg.ShutdownGrace,
		StepConfig: provision.StepConfig{TrustConditions: cfg.TrustConditions, StepTimeout: cfg.StepTimeout,
			VerifyTimeout: cfg.VerifyTimeout, PropagationTimeout: cfg.PropagationTimeout, RoleBoundary: cfg.RoleBoundary,
			World: world(cfg)},
		Logger:  log,
		Metrics: metrics,
	})
	if err != nil {
		return err
	}

	handler, err := api.New(api.Config{Store: st, Logger: log, Cloud: cfg.Cloud, OpenAPI: bucketbridge.OpenAPI,
		Authenticator: authn, Grants: grants, TrustConditions: cfg.TrustConditions, Registry: reg, RateLimit: cfg.RateLimit,
		CallbackGuard: cfg.Callbacks.Guard, CallbacksDisabled: cfg.Callbacks.Signer == nil,
		DatabaseTimeout: cfg.DatabaseTimeout, StreamsPerCaller: cfg.StreamsPerCaller, Streams: cfg.Streams,
		StreamLifetime: cfg.StreamLifetime})
	if err != nil {
		return err
	}
	// A callback's data is the request as the API renders it, rendered in
	// the transaction of the state change it announces.
	st.QueueCallbacks(handler.Render)

	// The dispatcher stops after the worker pool, so that it still sends
	// what the pool's last transitions queued; its own context outlives ctx.
	dispatchCtx, stopDispatching := context.WithCancel(context.WithoutCancel(ctx))
	defer stopDispatching()
	webhookMetrics := webhook.NewMetrics(reg)
	var dispatcher *webhook.Dispatcher
	if cfg.Callbacks.Signer != nil {
		if dispatcher, err = newDispatcher(dispatchCtx, cfg.Callbacks, st, webhookMetrics, log); err != nil {
			return err
		}
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	// Event streams end as soon as shutdown begins; otherwise every open
	// one would hold the server for the whole grace period.
	srv.RegisterOnShutdown(handler.CloseStreams)
	// SIGHUP is caught from before the server answers, so that a hangup
	// sent once it is ready reloads the grants instead of killing it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	log.InfoContext(ctx, "serving", "addr", ln.Addr().String(), "workers", cfg.Workers)

	var workers, dispatching sync.WaitGroup
	workers.Go(func() { pool.Run(ctx) })
	workers.Go(func() { reloadOnHangup(ctx, hup, grants, log) })
	workers.Go(func() { forgetIdempotencyKeys(ctx, st, sweepEvery(cfg.IdempotencyTTL), log) })
	if dispatcher != nil {
		dispatching.Go(func() { dispatcher.Run(dispatchCtx) })
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}

	// The pool stops claiming at once and gives running steps the grace
	// period; HTTP gets the same period for in-flight requests, while event
	// streams end at once (their clients resume elsewhere). Then the
	// dispatcher stops claiming and finishes the attempts under way, each
	// bounded by BB_WEBHOOK_TIMEOUT; what it has not sent stays queued for
	// the other replicas or the next start. The store closes last.
	log.Info("shutting down", "grace", cfg.ShutdownGrace.String())
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownGrace)
	defer cancel()
	httpErr := srv.Shutdown(shutdownCtx)
	workers.Wait()
	if cloud != nil {
		flushDevCloud(ctx, cloud, log)
	}
	stopDispatching()
	dispatching.Wait()
	if httpErr != nil {
		return fmt.Errorf("shut down http: %w", httpErr)
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve http: %w", err)
	}
	log.Info("stopped")
	return nil
}

// openGrants reads the grants file, or makes every caller admin on every
// account in dev mode without one and when BB_AUTHZ says so, with a
// warning at every start.
func openGrants(ctx context.Context, cfg config, log *slog.Logger) (*authz.Holder, error) {
	if cfg.AuthzFile == "" {
		if cfg.AllowAll {
			log.WarnContext(ctx, "BB_AUTHZ="+allowAllSetting+": every caller with a valid token is admin on every account, "+
				"so anyone holding a token may replicate any bucket into any account; set BB_AUTHZ_FILE to give each caller only their accounts")
		} else {
			log.WarnContext(ctx, "dev mode: BB_AUTHZ_FILE is unset, so every caller is admin on every account")
		}
		h := authz.Fixed(authz.AllowAll())
		log.InfoContext(ctx, "grants", "grants", h.Grants())
		return h, nil
	}
	h, err := authz.NewHolder(cfg.AuthzFile)
	if err != nil {
		return nil, fmt.Errorf("BB_AUTHZ_FILE: %w", err)
	}
	log.InfoContext(ctx, "grants", "file", cfg.AuthzFile, "grants", h.Grants())
	return h, nil
}

// openAuthenticator accepts the static tokens and, when an identity
// provider is configured, its JWTs; the provider must answer at start-up.
func openAuthenticator(ctx context.Context, cfg config) (*authz.Authenticator, error) {
	var oidc *authz.OIDC
	if cfg.OIDC.Issuer != "" {
		var err error
		if oidc, err = authz.NewOIDC(ctx, cfg.OIDC); err != nil {
			return nil, fmt.Errorf("BB_OIDC_ISSUER: %w", err)
		}
	}
	return authz.NewAuthenticator(cfg.Tokens, oidc)
}

// reloadOnHangup reads the grants file again on every SIGHUP until ctx
// ends. A file that is missing or invalid leaves the grants in force, so a
// typo cannot lock everyone out; the log says why.
func reloadOnHangup(ctx context.Context, hup <-chan os.Signal, grants *authz.Holder, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		if grants.Path() == "" {
			log.InfoContext(ctx, "SIGHUP: no grants file to reload", "grants", grants.Grants())
			continue
		}
		if err := grants.Reload(); err != nil {
			log.ErrorContext(ctx, "SIGHUP: the grants file is not usable; keeping the grants in force", "error", err,
				"file", grants.Path(), "grants", grants.Grants())
			continue
		}
		log.InfoContext(ctx, "SIGHUP: grants reloaded", "file", grants.Path(), "grants", grants.Grants())
	}
}

// apiConns is the database connections kept for the API and the LISTEN of
// each wake-up channel, beside the workers' own.
const apiConns = 12

// dispatcherConns is the webhook dispatcher's share: its claim and the
// attempts it records, each a single statement.
const dispatcherConns = 2

// maxDefaultConns caps the pool the server sizes itself: Postgres allows
// 100 connections by default, shared by every replica. Lock bounds the
// connections its holders pin (store.Lock), so a pool smaller than the
// workers could use only makes them queue for it.
const maxDefaultConns = 30

// databaseConns sizes the database pool: what the workers may hold at once
// (their advisory locks each pin a connection) plus the API's and the
// dispatcher's shares, at most maxDefaultConns.
func databaseConns(workers int, steps map[provision.Phase][]provision.StepDef) int {
	return min(provision.Connections(workers, steps)+apiConns+dispatcherConns, maxDefaultConns)
}

// world names the AWS this process provisions in: AWS itself, or this
// process's own in-memory AWS in dev mode.
func world(cfg config) string {
	if cfg.Cloud == "aws" {
		return "aws"
	}
	return "dev:" + rand.Text()
}

// openSessions connects the workers to AWS: the SDK's default chain (and
// AWS_ENDPOINT_URL) for aws, or dev mode's in-memory AWS, both through
// AssumeRole into each account's provisioner role.
func openSessions(ctx context.Context, cfg config, cloud *awsfake.Cloud) (provision.Sessions, error) {
	if cfg.Cloud == "aws" {
		awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
		if err != nil {
			return nil, fmt.Errorf("load AWS configuration: %w", err)
		}
		return provision.NewAWSSessions(awsCfg, cfg.ProvisionerRole, cfg.ExternalID), nil
	}
	clientsFor := func(creds ststypes.Credentials, region string) (*provision.Account, error) {
		c, err := cloud.ClientsFor(creds, region)
		if err != nil {
			return nil, err
		}
		return &provision.Account{ID: c.Account, STS: c.STS, IAM: c.IAM, KMS: c.KMS, S3: c.S3}, nil
	}
	return provision.NewAssumingSessions(cloud.STS(awsfake.DemoServiceAccount), clientsFor, cfg.ProvisionerRole, cfg.ExternalID), nil
}
