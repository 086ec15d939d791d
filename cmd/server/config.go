package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bucketbridge/bucketbridge/internal/api"
	"github.com/bucketbridge/bucketbridge/internal/authz"
	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/store"
)

// config is everything the server reads from its environment.
type config struct {
	DatabaseURL string
	Listen      string
	// Cloud is aws (the SDK's default credential chain; AWS_ENDPOINT_URL
	// points it at an emulator) or fake (dev mode: the in-memory AWS).
	Cloud string
	// Tokens authenticate API callers: token → caller name (BB_API_TOKENS,
	// "name:token,name:token"); each is the identity token:<name>.
	Tokens map[string]string
	// DevTokens is set when dev mode made up tokens because none were given.
	DevTokens bool
	// AuthzFile is the grants file (BB_AUTHZ_FILE); SIGHUP reloads it.
	AuthzFile string
	// AllowAll makes every authenticated caller admin on every account
	// (BB_AUTHZ=allow-all-tokens-as-admin); dev mode does the same when
	// no grants file is given.
	AllowAll bool
	// OIDC accepts JWTs from the organisation's identity provider when its
	// Issuer is set (BB_OIDC_ISSUER, BB_OIDC_AUDIENCE, BB_OIDC_GROUPS_CLAIM,
	// BB_OIDC_USER_CLAIM).
	OIDC authz.OIDCConfig
	// ShutdownGrace bounds how long in-flight HTTP requests and steps may
	// finish on shutdown.
	ShutdownGrace time.Duration

	// Workers is the size of the worker pool; 0 serves the API only.
	Workers int
	// ProvisionerRole is the role assumed in every account, with ExternalID.
	ProvisionerRole string
	ExternalID      string
	Lease           time.Duration
	StepTimeout     time.Duration
	RequestDeadline time.Duration
	VerifyTimeout   time.Duration
	// PropagationTimeout bounds retrying AWS's "not visible yet" answers.
	PropagationTimeout time.Duration
	// TrustConditions adds the confused-deputy conditions to trust policies.
	TrustConditions bool
	// RoleBoundary names the permissions boundary policy replication roles
	// are created with (BB_ROLE_PERMISSIONS_BOUNDARY).
	RoleBoundary string
	// FakeLatency is added to every call of the in-memory AWS, and
	// FakeBenchSources seeds that many bench buckets on each side
	// (BB_FAKE_LATENCY, BB_FAKE_BENCH_SOURCES): dev mode only, for
	// benchmarks.
	FakeLatency      time.Duration
	FakeBenchSources int
	// FakePersist keeps dev mode's in-memory AWS in the database, so that a
	// restart keeps it (BB_FAKE_PERSIST, default true); false keeps it in
	// the process alone, as benchmarks and several dev-mode processes on
	// one database want.
	FakePersist bool
	// RateLimit is how many requests that change state each API caller may
	// send a minute; 0 sets no limit.
	RateLimit int
	// IdempotencyTTL is how long an Idempotency-Key is remembered after its
	// first use (BB_IDEMPOTENCY_TTL).
	IdempotencyTTL time.Duration
	// DatabaseTimeout bounds the database work of one API request
	// (BB_DATABASE_TIMEOUT).
	DatabaseTimeout time.Duration
	// StreamsPerCaller and Streams cap the event streams open at once per
	// caller and in the process, and StreamLifetime ends each stream after
	// it (BB_SSE_MAX_PER_CALLER, BB_SSE_MAX, BB_SSE_MAX_LIFETIME).
	StreamsPerCaller int
	Streams          int
	StreamLifetime   time.Duration

	// Callbacks is how callbacks are signed and sent.
	Callbacks callbackConfig
}

// defaultDatabaseURL matches a local Postgres with trust auth.
const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// devToken is the API token of dev mode (BB_CLOUD=fake) when BB_API_TOKENS
// is unset, so the README's examples work as printed.
const devToken = "dev-token"

// iamPolicyName is IAM's pattern for a managed policy's name (CreatePolicy,
// PolicyName).
// https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreatePolicy.html
var iamPolicyName = regexp.MustCompile(`^[\w+=,.@-]{1,128}$`)

// devTokens are the API tokens of dev mode when BB_API_TOKENS is unset: dev
// is admin in dev/authz.yaml, and alice and bob are the two parties of the
// README's consent walkthrough with that file.
func devTokens() map[string]string {
	return map[string]string{devToken: "dev", "alice-token": "alice", "bob-token": "bob"}
}

// allowAllSetting is the one value of BB_AUTHZ: the explicit choice to run
// without a grants file, every caller admin on every account.
const allowAllSetting = "allow-all-tokens-as-admin"

// minTokenLength keeps guessable tokens out of production.
const minTokenLength = 16

// loadConfig reads environment variables, then flags that override them,
// and names every invalid setting at once.
func loadConfig(args []string, getenv func(string) string) (config, error) {
	var errs []error
	env := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	duration := func(key string, def time.Duration) time.Duration {
		d, err := time.ParseDuration(env(key, def.String()))
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s: want a positive duration such as %s, got %q", key, def, getenv(key)))
		}
		return d
	}
	nonNegative := func(key string) time.Duration {
		v := getenv(key)
		if v == "" {
			return 0
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			errs = append(errs, fmt.Errorf("%s: want a duration such as 20ms, got %q", key, v))
		}
		return d
	}
	cfg := config{
		DatabaseURL:        env("DATABASE_URL", defaultDatabaseURL),
		Listen:             env("BB_LISTEN", ":8080"),
		Cloud:              env("BB_CLOUD", "aws"),
		ShutdownGrace:      duration("BB_SHUTDOWN_GRACE", provision.DefaultShutdownGrace),
		ProvisionerRole:    env("BB_PROVISIONER_ROLE", "BucketbridgeProvisioner"),
		ExternalID:         getenv("BB_EXTERNAL_ID"),
		Lease:              duration("BB_LEASE", provision.DefaultLease),
		StepTimeout:        duration("BB_STEP_TIMEOUT", provision.DefaultStepTimeout),
		RequestDeadline:    duration("BB_REQUEST_DEADLINE", provision.DefaultRequestDeadline),
		VerifyTimeout:      duration("BB_VERIFY_TIMEOUT", provision.DefaultVerifyTimeout),
		PropagationTimeout: duration("BB_PROPAGATION_TIMEOUT", provision.DefaultPropagationTimeout),
		RoleBoundary:       getenv("BB_ROLE_PERMISSIONS_BOUNDARY"),
		FakeLatency:        nonNegative("BB_FAKE_LATENCY"),
		IdempotencyTTL:     duration("BB_IDEMPOTENCY_TTL", store.DefaultIdempotencyTTL),
		DatabaseTimeout:    duration("BB_DATABASE_TIMEOUT", api.DefaultDatabaseTimeout),
		StreamLifetime:     duration("BB_SSE_MAX_LIFETIME", api.DefaultStreamLifetime),
	}
	var err error
	if cfg.Workers, err = strconv.Atoi(env("BB_WORKERS", strconv.Itoa(provision.DefaultWorkers))); err != nil || cfg.Workers < 0 {
		errs = append(errs, fmt.Errorf("BB_WORKERS: want a whole number, 0 or more, got %q", getenv("BB_WORKERS")))
	}
	if cfg.RateLimit, err = strconv.Atoi(env("BB_RATE_LIMIT", "600")); err != nil || cfg.RateLimit < 0 {
		errs = append(errs, fmt.Errorf("BB_RATE_LIMIT: want changes per caller per minute, a whole number (0 for no limit), got %q", getenv("BB_RATE_LIMIT")))
	}
	positive := func(key string, def int) int {
		n, err := strconv.Atoi(env(key, strconv.Itoa(def)))
		if err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("%s: want a whole number, 1 or more, got %q", key, getenv(key)))
		}
		return n
	}
	cfg.StreamsPerCaller = positive("BB_SSE_MAX_PER_CALLER", api.DefaultStreamsPerCaller)
	cfg.Streams = positive("BB_SSE_MAX", api.DefaultStreams)
	if v := getenv("BB_FAKE_BENCH_SOURCES"); v != "" {
		if cfg.FakeBenchSources, err = strconv.Atoi(v); err != nil || cfg.FakeBenchSources < 0 || cfg.FakeBenchSources > 100000 {
			errs = append(errs, fmt.Errorf("BB_FAKE_BENCH_SOURCES: want a whole number from 0 to 100000, got %q", v))
		}
	}
	if b := cfg.RoleBoundary; b != "" && !iamPolicyName.MatchString(b) {
		errs = append(errs, fmt.Errorf("BB_ROLE_PERMISSIONS_BOUNDARY: want the name of a managed policy (1 to 128 of letters, digits and +=,.@_-), got %q", b))
	}
	if cfg.FakePersist, err = strconv.ParseBool(env("BB_FAKE_PERSIST", "true")); err != nil {
		errs = append(errs, fmt.Errorf("BB_FAKE_PERSIST: want true or false, got %q", getenv("BB_FAKE_PERSIST")))
	}
	if cfg.TrustConditions, err = strconv.ParseBool(env("BB_TRUST_CONDITIONS", "false")); err != nil {
		errs = append(errs, fmt.Errorf("BB_TRUST_CONDITIONS: want true or false, got %q", getenv("BB_TRUST_CONDITIONS")))
	}
	if cfg.Tokens, err = parseTokens(getenv("BB_API_TOKENS")); err != nil {
		errs = append(errs, err)
	}
	cfg.AuthzFile = getenv("BB_AUTHZ_FILE")
	switch v := getenv("BB_AUTHZ"); v {
	case "":
	case allowAllSetting:
		cfg.AllowAll = true
	default:
		errs = append(errs, fmt.Errorf("BB_AUTHZ: the only value is %s (prefer BB_AUTHZ_FILE), got %q", allowAllSetting, v))
	}
	cfg.OIDC = authz.OIDCConfig{Issuer: getenv("BB_OIDC_ISSUER"), Audience: getenv("BB_OIDC_AUDIENCE"),
		GroupsClaim: env("BB_OIDC_GROUPS_CLAIM", "groups"), UserClaim: env("BB_OIDC_USER_CLAIM", "sub")}
	switch {
	case cfg.OIDC.Issuer != "" && cfg.OIDC.Audience == "":
		errs = append(errs, errors.New("BB_OIDC_AUDIENCE: set the client ID the identity provider issues tokens for, with BB_OIDC_ISSUER"))
	case cfg.OIDC.Issuer == "" && cfg.OIDC.Audience != "":
		errs = append(errs, errors.New("BB_OIDC_ISSUER: set the identity provider's issuer URL, with BB_OIDC_AUDIENCE"))
	case cfg.OIDC.Issuer == "" && (getenv("BB_OIDC_GROUPS_CLAIM") != "" || getenv("BB_OIDC_USER_CLAIM") != ""):
		errs = append(errs, errors.New("BB_OIDC_ISSUER: the OIDC claims are set but no identity provider is"))
	}
	if cfg.AllowAll && cfg.AuthzFile != "" {
		errs = append(errs, fmt.Errorf("BB_AUTHZ: %s and BB_AUTHZ_FILE contradict each other; set one", allowAllSetting))
	}
	if cfg.AllowAll && cfg.OIDC.Issuer != "" {
		// Everyone the identity provider knows would be admin everywhere.
		errs = append(errs, fmt.Errorf("BB_AUTHZ: %s is for static tokens only; with BB_OIDC_ISSUER, give grants in BB_AUTHZ_FILE", allowAllSetting))
	}

	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address to serve HTTP on (BB_LISTEN)")
	fs.StringVar(&cfg.DatabaseURL, "database-url", cfg.DatabaseURL, "Postgres URL (DATABASE_URL)")
	fs.StringVar(&cfg.Cloud, "cloud", cfg.Cloud, "aws or fake (BB_CLOUD)")
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "worker pool size; 0 serves the API only (BB_WORKERS)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}

	if _, ok := maskDatabaseURL(cfg.DatabaseURL); !ok {
		errs = append(errs, errors.New("DATABASE_URL: want a postgres:// URL or a keyword/value connection string such as \"host=db dbname=bucketbridge\""))
	}
	if _, _, err := net.SplitHostPort(cfg.Listen); err != nil {
		errs = append(errs, fmt.Errorf("BB_LISTEN: want host:port such as :8080, got %q", cfg.Listen))
	}
	if cfg.Cloud != "fake" && (cfg.FakeLatency > 0 || cfg.FakeBenchSources > 0) {
		errs = append(errs, errors.New("BB_FAKE_LATENCY and BB_FAKE_BENCH_SOURCES tune the in-memory AWS of dev mode: set them only with BB_CLOUD=fake"))
	}
	switch cfg.Cloud {
	case "fake":
		cfg.ExternalID = cmp.Or(cfg.ExternalID, "bucketbridge-dev")
		if len(cfg.Tokens) == 0 {
			cfg.Tokens, cfg.DevTokens = devTokens(), true
		}
	case "aws":
		if len(cfg.Tokens) == 0 && cfg.OIDC.Issuer == "" {
			errs = append(errs, errors.New("BB_API_TOKENS: set at least one name:token pair, or BB_OIDC_ISSUER; the API is never served unauthenticated"))
		}
		if cfg.AuthzFile == "" && !cfg.AllowAll {
			errs = append(errs, fmt.Errorf("BB_AUTHZ_FILE: set the grants file saying who may act on which account, "+
				"or BB_AUTHZ=%s to make every caller admin on every account; without grants, anyone with a token could replicate any bucket anywhere", allowAllSetting))
		}
		if cfg.ExternalID == "" && cfg.Workers > 0 {
			errs = append(errs, errors.New("BB_EXTERNAL_ID: set the ExternalId the provisioner roles' trust policies require"))
		}
	default:
		errs = append(errs, fmt.Errorf("BB_CLOUD: want aws or fake, got %q", cfg.Cloud))
	}
	callbacks, callbackErrs := loadCallbacks(getenv, cfg.Cloud, duration)
	cfg.Callbacks, errs = callbacks, append(errs, callbackErrs...)
	if cfg.Lease > 0 && cfg.Lease < 3*time.Second {
		errs = append(errs, fmt.Errorf("BB_LEASE: want at least 3s so heartbeats can renew it, got %s", cfg.Lease))
	}
	return cfg, errors.Join(errs...)
}

// parseTokens reads "name:token,name:token".
func parseTokens(v string) (map[string]string, error) {
	tokens := map[string]string{}
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
			return nil, errors.New("BB_API_TOKENS: two callers share a token")
		}
		tokens[token] = name
	}
	return tokens, nil
}

// LogValue masks every secret of the database connection string, the API
// tokens and the webhook secrets so the config can be logged.
func (c config) LogValue() slog.Value {
	db, ok := maskDatabaseURL(c.DatabaseURL)
	if !ok {
		db = "(unparseable)"
	}
	callers := make([]string, 0, len(c.Tokens))
	for _, name := range c.Tokens {
		callers = append(callers, name)
	}
	slices.Sort(callers)
	externalID := "(unset)"
	if c.ExternalID != "" {
		externalID = "(set)"
	}
	authzMode := "file"
	switch {
	case c.AllowAll:
		authzMode = allowAllSetting
	case c.AuthzFile == "":
		authzMode = "dev mode: every caller is admin"
	}
	return slog.GroupValue(
		slog.String("database_url", db),
		slog.Any("api_callers", callers),
		slog.String("authz", authzMode),
		slog.String("authz_file", c.AuthzFile),
		slog.String("oidc_issuer", c.OIDC.Issuer),
		slog.String("oidc_audience", c.OIDC.Audience),
		slog.String("oidc_groups_claim", c.OIDC.GroupsClaim),
		slog.String("oidc_user_claim", c.OIDC.UserClaim),
		slog.String("listen", c.Listen),
		slog.String("cloud", c.Cloud),
		slog.Int("workers", c.Workers),
		slog.String("provisioner_role", c.ProvisionerRole),
		slog.String("external_id", externalID),
		slog.String("lease", c.Lease.String()),
		slog.String("step_timeout", c.StepTimeout.String()),
		slog.String("request_deadline", c.RequestDeadline.String()),
		slog.String("verify_timeout", c.VerifyTimeout.String()),
		slog.String("propagation_timeout", c.PropagationTimeout.String()),
		slog.Bool("trust_conditions", c.TrustConditions),
		slog.String("role_permissions_boundary", c.RoleBoundary),
		slog.String("fake_latency", c.FakeLatency.String()),
		slog.Int("fake_bench_sources", c.FakeBenchSources),
		slog.Bool("fake_persist", c.FakePersist),
		slog.Int("rate_limit", c.RateLimit),
		slog.String("idempotency_ttl", c.IdempotencyTTL.String()),
		slog.String("database_timeout", c.DatabaseTimeout.String()),
		slog.Int("sse_max_per_caller", c.StreamsPerCaller),
		slog.Int("sse_max", c.Streams),
		slog.String("sse_max_lifetime", c.StreamLifetime.String()),
		slog.String("shutdown_grace", c.ShutdownGrace.String()),
		slog.Any("callbacks", c.Callbacks),
	)
}

// mask replaces a secret in a logged connection string.
const mask = "xxxxx"

// maskDatabaseURL returns the connection string with every value that may
// be a secret masked, and whether it reads as one. It splits the string
// exactly as pgx does, which follows libpq: a postgres:// or postgresql://
// URL (userinfo up to the first '@' before any '/', hosts, path, then
// '&'-separated query pairs), or else keyword=value pairs, values
// unquoted or in single quotes with backslash escapes. Splitting it any
// other way (net/url's, say) would leave some spellings of a password in
// clear, e.g. one holding '#' or '?'.
// https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING
func maskDatabaseURL(s string) (string, bool) {
	if strings.IndexByte(s, 0) >= 0 {
		return "", false
	}
	for _, scheme := range []string{"postgresql://", "postgres://"} {
		if rest, ok := strings.CutPrefix(s, scheme); ok {
			return maskURL(scheme, rest)
		}
	}
	return maskKeywordValue(s)
}

// secretParam reports whether a connection parameter may carry a secret:
// password and sslpassword, libpq's OAuth client secret, anything named like
// a password, secret or token, and sslkey when it holds the key itself
// rather than a file's path. passfile, sslcert and sslrootcert are paths or
// public certificates.
func secretParam(key, value string) bool {
	k := strings.ToLower(key)
	switch {
	case k == "passfile":
		return false
	case strings.Contains(k, "password"), strings.Contains(k, "secret"), strings.Contains(k, "token"):
		return true
	case k == "sslkey":
		return strings.Contains(value, "-----BEGIN") || strings.ContainsAny(value, "\n\r")
	}
	return false
}

// maskURL masks the userinfo password and secret query values of the URL
// form; rest is what follows the scheme.
func maskURL(scheme, rest string) (string, bool) {
	var b strings.Builder
	b.WriteString(scheme)
	if i := strings.IndexAny(rest, "@/"); i >= 0 && rest[i] == '@' {
		user, _, hasPassword := strings.Cut(rest[:i], ":")
		switch {
		case strings.ContainsAny(user, "?&="):
			// A query before the '@' is still userinfo to libpq; it is
			// no place for a user name, so it is shown as nothing.
			b.WriteString(mask)
		case hasPassword:
			b.WriteString(user + ":" + mask)
		default:
			b.WriteString(user)
		}
		b.WriteByte('@')
		rest = rest[i+1:]
	}
	if hosts, _, _ := strings.Cut(rest, "/"); strings.Contains(hosts, "@") {
		// libpq ends the userinfo at the first '@', so a second one means
		// a password with an '@' not written as %40: the rest of it would
		// be shown, and used, as a host name.
		return "", false
	}
	// Hosts: bracketed IPv6 addresses may hold any byte but ']'.
	for {
		if strings.HasPrefix(rest, "[") {
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return "", false
			}
			b.WriteString(rest[:end+1])
			rest = rest[end+1:]
		} else {
			i := strings.IndexAny(rest, ":/?,")
			if i < 0 {
				i = len(rest)
			}
			b.WriteString(rest[:i])
			rest = rest[i:]
		}
		if strings.HasPrefix(rest, ":") {
			i := strings.IndexAny(rest[1:], "/?,")
			if i < 0 {
				i = len(rest) - 1
			}
			b.WriteString(rest[:i+1])
			rest = rest[i+1:]
		}
		if !strings.HasPrefix(rest, ",") {
			break
		}
		b.WriteByte(',')
		rest = rest[1:]
	}
	if strings.HasPrefix(rest, "/") {
		i := strings.IndexByte(rest, '?')
		if i < 0 {
			i = len(rest)
		}
		b.WriteString(rest[:i])
		rest = rest[i:]
	}
	if rest == "" || rest == "?" {
		return b.String() + rest, true
	}
	if !strings.HasPrefix(rest, "?") {
		return "", false
	}
	b.WriteByte('?')
	for i, pair := range strings.Split(rest[1:], "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		rawKey, rawValue, ok := strings.Cut(pair, "=")
		if !ok {
			return "", false
		}
		key, err := url.PathUnescape(strings.Trim(rawKey, " "))
		if err != nil || !paramName(key) {
			return "", false
		}
		value, err := url.PathUnescape(strings.Trim(rawValue, " "))
		if err != nil || secretParam(key, value) {
			// A pair pgx cannot decode stops it from starting; shown
			// masked all the same, since it may be a password.
			b.WriteString(rawKey + "=" + mask)
			continue
		}
		b.WriteString(pair)
	}
	return b.String(), true
}

// maskKeywordValue masks secret values of the keyword/value form
// ("host=db password='s3 cret'"), keeping every other pair as written.
func maskKeywordValue(s string) (string, bool) {
	const space = " \t\n\r\v\f"
	var pairs []string
	s = strings.TrimLeft(s, space)
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return "", false
		}
		key := strings.Trim(s[:eq], space)
		if !paramName(key) {
			return "", false
		}
		s = strings.TrimLeft(s[eq+1:], space)
		var raw, value string
		if strings.HasPrefix(s, "'") {
			end := 1
			for ; end < len(s) && s[end] != '\''; end++ {
				if s[end] == '\\' {
					end++
				}
			}
			if end >= len(s) {
				return "", false // unterminated quote
			}
			raw, value = s[:end+1], unescapeConnValue(s[1:end])
			s = s[end+1:]
		} else {
			end := 0
			for ; end < len(s) && !strings.ContainsRune(space, rune(s[end])); end++ {
				if s[end] == '\\' {
					end++
				}
			}
			end = min(end, len(s))
			raw, value = s[:end], unescapeConnValue(s[:end])
			s = s[end:]
		}
		s = strings.TrimLeft(s, space)
		if secretParam(key, value) {
			raw = mask
		}
		pairs = append(pairs, key+"="+raw)
	}
	if len(pairs) == 0 {
		return "", false
	}
	return strings.Join(pairs, " "), true
}

// paramName reports whether key can name a connection parameter: libpq's
// keywords and Postgres settings are letters, digits, '_' and '.'. Other
// keys are refused, so nothing that is not a parameter (a mistyped URL, a
// password pasted in the wrong place) is ever logged as one.
func paramName(key string) bool {
	if key == "" {
		return false
	}
	for _, c := range []byte(key) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// unescapeConnValue drops the backslash before each escaped character.
func unescapeConnValue(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			if i == len(s) {
				break
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
