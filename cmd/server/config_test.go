package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestDatabaseURLSecretsAreMaskedInEveryForm(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, want string
	}{
		// The URL form.
		{"userinfo password", "postgres://bb:hunter2@db:5432/bb?sslmode=require", "postgres://bb:xxxxx@db:5432/bb?sslmode=require"},
		{"password parameter", "postgres://bb@db/bb?password=hunter2&sslmode=disable", "postgres://bb@db/bb?password=xxxxx&sslmode=disable"},
		{"sslpassword", "postgres://bb@db/bb?sslmode=verify-full&sslkey=/etc/bb/client.key&sslpassword=hunter2",
			"postgres://bb@db/bb?sslmode=verify-full&sslkey=/etc/bb/client.key&sslpassword=xxxxx"},
		{"percent-encoded parameter name", "postgres://bb@db/bb?pass%77ord=hunter2", "postgres://bb@db/bb?pass%77ord=xxxxx"},
		{"repeated password", "postgres://db/bb?password=hunter2&password=hunter3", "postgres://db/bb?password=xxxxx&password=xxxxx"},
		{"password holding '#'", "postgres://bb:12#34@db/bb", "postgres://bb:xxxxx@db/bb"},
		{"password holding '?'", "postgres://bb:hun?ter2@db/bb", "postgres://bb:xxxxx@db/bb"},
		{"password holding '@' as %40", "postgres://bb:hun%40ter2@db/bb", "postgres://bb:xxxxx@db/bb"},
		{"several hosts", "postgresql://bb:hunter2@h1:5432,h2:5433/bb?target_session_attrs=read-write",
			"postgresql://bb:xxxxx@h1:5432,h2:5433/bb?target_session_attrs=read-write"},
		{"IPv6 host", "postgres://bb:hunter2@[::1]:5432/bb", "postgres://bb:xxxxx@[::1]:5432/bb"},
		{"OAuth client secret", "postgres://db/bb?oauth_client_id=bb&oauth_client_secret=hunter2",
			"postgres://db/bb?oauth_client_id=bb&oauth_client_secret=xxxxx"},
		{"sslkey inline", "postgres://db/bb?sslkey=-----BEGIN%20PRIVATE%20KEY-----%0AMIIhunter2", "postgres://db/bb?sslkey=xxxxx"},
		{"a query before the '@' is userinfo", "postgres://db?password=hunter2@h/bb", "postgres://xxxxx@h/bb"},
		{"passfile path kept", "postgres://bb@db/bb?passfile=/etc/bb/pgpass", "postgres://bb@db/bb?passfile=/etc/bb/pgpass"},
		{"nothing secret", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"},
		{"empty query", "postgres://db/bb?", "postgres://db/bb?"},
		// The keyword/value form.
		{"keyword password", "host=db user=bb password=hunter2 dbname=bb", "host=db user=bb password=xxxxx dbname=bb"},
		{"quoted password with a space", "host=db password='hun ter2' dbname=bb", "host=db password=xxxxx dbname=bb"},
		{"quoted password with an escaped quote", `host=db password='hun\'ter2' dbname=bb`, "host=db password=xxxxx dbname=bb"},
		{"escaped space unquoted", `host=db password=hun\ ter2 dbname=bb`, "host=db password=xxxxx dbname=bb"},
		{"spaces around '='", "host = db  password =  hunter2\tsslmode=disable ", "host=db password=xxxxx sslmode=disable"},
		{"keyword sslpassword", "host=db sslkey=/etc/bb/client.key sslpassword=hunter2", "host=db sslkey=/etc/bb/client.key sslpassword=xxxxx"},
		{"keyword OAuth secret", "host=db oauth_client_secret='hunter2'", "host=db oauth_client_secret=xxxxx"},
		{"keyword passfile kept", "host=db passfile=/home/bb/.pgpass", "host=db passfile=/home/bb/.pgpass"},
		{"quoted values kept as written", "host=db application_name='bucket bridge'", "host=db application_name='bucket bridge'"},
		{"empty password", "host=db password=", "host=db password=xxxxx"},
	} {
		got, ok := maskDatabaseURL(tc.in)
		if !ok || got != tc.want {
			t.Errorf("%s: %q, %v\nwant %q", tc.name, got, ok, tc.want)
		}
		for _, secret := range []string{"hunter", "ter2", "12#34", "MII"} {
			if strings.Contains(got, secret) {
				t.Errorf("%s: %q shows the secret", tc.name, got)
			}
		}
	}
}

func TestConnectionStringsThatAreNotOneAreRefused(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"mysql://x",
		"host=db password='hunter2",
		"POSTGRES://bb:hunter2@db/bb?sslmode=disable",
		"hunter2",
		"",
		"host=db\x00",
		"postgres://[::1/bb",
		"postgres://db/bb?password",
		"postgres://db/bb?password%3Dhunter2=1",
		"host=db pass:word=hunter2",
		"postgres://bb:hun@ter2@db/bb", // libpq reads host "ter2@db"
		"postgres://db/bb?%20password%20=hunter2", // not a parameter name
	} {
		if got, ok := maskDatabaseURL(in); ok {
			t.Errorf("%q read as a connection string: %q", in, got)
		}
		if _, err := loadConfig(nil, func(k string) string {
			return map[string]string{"DATABASE_URL": in, "BB_CLOUD": "fake"}[k]
		}); in != "" && (err == nil || !strings.Contains(err.Error(), "DATABASE_URL")) {
			t.Errorf("DATABASE_URL=%q: error %v, want one naming DATABASE_URL", in, err)
		}
	}
}

// FuzzMaskedDatabaseURLNeverShowsThePassword checks the masking against
// pgx's own reading: whatever password pgx would send is not in the log.
func FuzzMaskedDatabaseURLNeverShowsThePassword(f *testing.F) {
	for _, seed := range []string{
		"postgres://bb:hunter2@db:5432/bb", "postgres://bb:12#34@db/bb", "postgres://db/bb?password=hunter2",
		"postgres://db?password=hunter2@h/bb", "postgres://bb:a%40b@db/bb", "host=db password='hun ter2'",
		`host=db password=hun\ ter2`, "password = hunter2 host=db", "postgresql://u:p%3Fq@[::1]:1,h:2/d?password=x",
	} {
		f.Add(seed)
	}
	// Keys that make pgx read files are left out, so the fuzzer cannot
	// point it at /dev/zero; everything that names a password stays.
	allowed := []string{"host", "port", "dbname", "user", "password", "sslmode", "sslpassword",
		"application_name", "connect_timeout", "target_session_attrs", "options"}
	f.Fuzz(func(t *testing.T, s string) {
		cfg, err := pgconn.ParseConfigWithOptions(s, pgconn.ParseConfigOptions{ConnStringAllowedKeys: allowed})
		if err != nil || len(cfg.Password) < 4 {
			return
		}
		masked, ok := maskDatabaseURL(s)
		if ok && strings.Contains(masked, cfg.Password) {
			t.Fatalf("%q logs as %q, showing pgx's password %q", s, masked, cfg.Password)
		}
	})
}

func TestConfigLogShowsNoSecret(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(nil, func(k string) string {
		return map[string]string{
			"DATABASE_URL":   "host=127.0.0.1 user=bb password='hunter2' sslpassword=hunter3 dbname=bb",
			"BB_CLOUD":       "fake",
			"BB_API_TOKENS":  "portal:0123456789abcdef",
			"BB_EXTERNAL_ID": "external-hunter4",
			"BB_RATE_LIMIT":  "42",
		}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("starting", "config", cfg)
	for _, secret := range []string{"hunter", "0123456789abcdef"} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("the config log shows %q: %s", secret, buf.String())
		}
	}
	for _, shown := range []string{`"rate_limit":42`, `host=127.0.0.1`, `"api_callers":["portal"]`} {
		if !strings.Contains(buf.String(), shown) {
			t.Errorf("the config log lacks %s: %s", shown, buf.String())
		}
	}
}

func TestRateLimitSetting(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  string
		want int
		ok   bool
	}{
		{"", 600, true},
		{"0", 0, true},
		{"1", 1, true},
		{"100000", 100000, true},
		{"-1", 0, false},
		{"lots", 0, false},
		{"1.5", 0, false},
	} {
		cfg, err := loadConfig(nil, func(k string) string {
			return map[string]string{"BB_RATE_LIMIT": tc.env, "BB_CLOUD": "fake"}[k]
		})
		switch {
		case tc.ok && (err != nil || cfg.RateLimit != tc.want):
			t.Errorf("BB_RATE_LIMIT=%q: %d, %v; want %d", tc.env, cfg.RateLimit, err, tc.want)
		case !tc.ok && (err == nil || !strings.Contains(err.Error(), "BB_RATE_LIMIT")):
			t.Errorf("BB_RATE_LIMIT=%q: error %v, want one naming BB_RATE_LIMIT", tc.env, err)
		}
	}
}
