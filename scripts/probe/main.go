// Command probe plays a hostile client against a running bucketbridge and
// reports what it answered: malformed bodies, bad ids, cursors and filters,
// hostile request ids, random HTTP methods, clients that stall, and the
// per-caller rate limit, and (alone) a flood of event streams. It exits 1 when any answer breaks the API's
// promises (a 5xx, a 4xx that is not problem+json, metrics that grow with
// what clients send, a rate limit that does not hold). scripts/probe.sh
// runs it against a dev-mode server; docs/SECURITY.md records its figures.
package main

import (
	"bufio"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

// probe holds the target and the tally of what it answered.
type probe struct {
	base, token string
	client      *http.Client
	rng         *rand.Rand

	mu       sync.Mutex
	sections []*section
	failures []string
}

// section tallies one kind of hostile request.
type section struct {
	name     string
	sent     int
	statuses map[int]int
}

func run() error {
	var (
		base      = flag.String("base", "http://127.0.0.1:18473", "the server's base URL")
		token     = flag.String("token", "", "an API token")
		token2    = flag.String("token2", "", "a second caller's API token, for the rate limit")
		only      = flag.String("only", "all", "all; rate for the rate limit alone; streams for event streams alone")
		rateLimit = flag.Int("rate-limit", 0, "the server's BB_RATE_LIMIT; 0 skips the rate-limit check")
		methods   = flag.Int("methods", 3000, "random HTTP methods to send")
		slow      = flag.Int("slow", 20, "clients that stall mid-body, and as many mid-headers")
		seed      = flag.Uint64("seed", 1, "seed of the random choices, so runs repeat")
		streams   = flag.Int("streams", 450, "event streams to open at once, with -only streams")
		expect    = flag.Int("expect-open", -1, "how many of them the server's caps let open; -1 does not check")
		hold      = flag.Duration("hold", 10*time.Minute, "how long to hold the open streams unless the server ends them")
	)
	flag.Parse()
	if *token == "" {
		return errors.New("-token is required")
	}
	p := &probe{base: strings.TrimSuffix(*base, "/"), token: *token,
		client: &http.Client{Timeout: 60 * time.Second}, rng: rand.New(rand.NewPCG(*seed, *seed))}

	if *only == "streams" {
		tokens := []string{*token}
		if *token2 != "" {
			tokens = append(tokens, *token2)
		}
		p.streams(tokens, *streams, *expect, *hold)
		return p.report()
	}
	if *only == "rate" {
		if *token2 == "" || *rateLimit <= 0 {
			return errors.New("-only rate needs -token2 and -rate-limit")
		}
		p.rateLimit(*token2, *rateLimit)
		return p.report()
	}
	stage := func(name string) int {
		series, size := p.metrics()
		fmt.Printf("/metrics %s: %d HTTP series, %d bytes\n", name, series, size)
		return series
	}
	stage("at the start")
	p.bodies()
	p.ids()
	p.queries()
	p.requestIDs()
	beforeMethods := stage("before the random methods")
	p.methods(*methods)
	afterMethods := stage("after the random methods")
	p.slowClients(*slow)
	final := stage("at the end")
	// Unknown methods share one label: a few series per route, whatever
	// the number of methods. Every route, method and status the probe can
	// reach is a bounded set, a few hundred series with the buckets.
	if afterMethods-beforeMethods > 200 || final > 1000 {
		p.fail("/metrics grew from %d to %d HTTP series with %d random methods, %d in all",
			beforeMethods, afterMethods, *methods, final)
	}
	return p.report()
}

func (p *probe) fail(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.failures) < 50 {
		p.failures = append(p.failures, strings.Join(strings.Fields(fmt.Sprintf(format, args...)), " "))
	}
}

func (p *probe) section(name string) *section {
	s := &section{name: name, statuses: map[int]int{}}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sections = append(p.sections, s)
	return s
}

// tally counts an answer.
func (p *probe) tally(s *section, status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s.sent++
	s.statuses[status]++
}

// record tallies an answer and checks the promises every answer keeps.
func (p *probe) record(s *section, what string, status int, header http.Header, body []byte) {
	p.tally(s, status)
	if status >= 500 {
		p.fail("%s answered %d: %.200s", what, status, body)
	}
	if status >= 400 {
		if ct := header.Get("Content-Type"); ct != "application/problem+json" {
			p.fail("%s answered %d as %q", what, status, ct)
		}
	}
	if id := header.Get("X-Request-Id"); id != "" && !safeID(id) {
		p.fail("%s answered request id %q", what, id)
	}
	for _, leak := range []string{"127.0.0.1:", "i/o timeout", "SQLSTATE", "pgx", "goroutine", "panic"} {
		if strings.Contains(string(body), leak) {
			p.fail("%s answered %d showing %q: %.200s", what, status, leak, body)
		}
	}
}

func safeID(id string) bool {
	return len(id) <= 64 && !strings.ContainsFunc(id, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
	})
}

// do sends one request with the probe's token; header holds extra headers.
func (p *probe) do(s *section, method, path string, body []byte, header map[string]string) (int, []byte) {
	req, err := http.NewRequest(method, p.base+path, strings.NewReader(string(body)))
	if err != nil {
		p.fail("build %s %s: %v", method, path, err)
		return 0, nil
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	for k, v := range header {
		req.Header[http.CanonicalHeaderKey(k)] = []string{v}
	}
	resp, err := p.client.Do(req)
	if err != nil {
		p.fail("%s %s: %v", method, path, err)
		return 0, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	p.record(s, method+" "+path, resp.StatusCode, resp.Header, raw)
	return resp.StatusCode, raw
}

// valid is a create body that passes validation; dry_run keeps the probe
// from storing anything when a mutation happens to stay valid.
var valid = map[string]any{
	"source": map[string]any{"account_id": "111111111111", "region": "us-east-1", "bucket": "demo-source",
		"kms_key_arn": "arn:aws:kms:us-east-1:111111111111:key/11111111-1111-4111-8111-111111111111"},
	"destination": map[string]any{"account_id": "222222222222", "region": "us-west-2", "bucket": "demo-destination",
		"kms_key_arn": "arn:aws:kms:us-west-2:222222222222:key/22222222-2222-4222-8222-222222222222"},
	"rule":         map[string]any{"prefix": "reports/", "storage_class": "STANDARD"},
	"ticket":       "OPS-1",
	"callback_url": "https://hooks.example.com/bucketbridge",
	"verify":       true,
	"dry_run":      true,
}

// bodies sends create bodies that are wrong in every way the probe knows.
func (p *probe) bodies() {
	s := p.section("malformed bodies (POST /v1/replications)")
	validJSON, _ := json.Marshal(valid)
	var bodies [][]byte
	add := func(b string) { bodies = append(bodies, []byte(b)) }
	// Cut short at every byte.
	for i := range len(validJSON) {
		bodies = append(bodies, validJSON[:i])
	}
	// Every key: duplicated, case-folded, Kelvin-signed, unknown beside it,
	// each value replaced by every JSON type and by invalid UTF-8.
	for _, path := range leafPaths(valid, "") {
		key := path[strings.LastIndex(path, ".")+1:]
		quoted := `"` + key + `":`
		at := strings.Index(string(validJSON), quoted)
		if at < 0 {
			continue
		}
		head, tail := string(validJSON[:at]), string(validJSON[at:])
		add(head + quoted + `"dup",` + tail)
		add(head + `"` + strings.ToUpper(key) + `":` + tail[len(quoted):])
		add(head + `"` + strings.Replace(key, "k", "\u212a", 1) + `":` + tail[len(quoted):])
		add(head + `"extra_` + key + `":1,` + tail)
		value := tail[len(quoted):]
		end := valueEnd(value)
		for _, v := range []string{`1`, `-1e999`, `true`, `null`, `{}`, `[]`, `"\u0000"`, "\"\xff\xfe\"", `"\ud800"`,
			`"` + strings.Repeat("x", 5000) + `"`, `"\u0085"`, `"` + strings.Repeat("é", 257) + `"`} {
			add(head + quoted + v + value[end:])
		}
	}
	// Shapes that are not one JSON object.
	for _, b := range []string{``, ` `, `null`, `[]`, `"x"`, `1`, `{} {}`, `{}x`, "\ufeff{}", `{"a":` + strings.Repeat("[", 5000),
		`{"rule":` + strings.Repeat(`{"prefix":`, 100) + `1` + strings.Repeat(`}`, 101)} {
		add(b)
	}
	// Random byte flips of the valid body.
	for range 300 {
		b := slices.Clone(validJSON)
		for range 1 + p.rng.IntN(4) {
			b[p.rng.IntN(len(b))] = byte(p.rng.IntN(256))
		}
		bodies = append(bodies, b)
	}
	for _, b := range bodies {
		p.do(s, "POST", "/v1/replications", b, map[string]string{"Content-Type": "application/json"})
	}
	for _, ct := range []string{"", "text/plain", "application/json; charset=utf-16", "application/json; charset=latin1",
		"application/json; charset", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "*/*"} {
		h := map[string]string{}
		if ct != "" {
			h["Content-Type"] = ct
		}
		p.do(s, "POST", "/v1/replications", validJSON, h)
	}
	big := append([]byte(`{"ticket":"`), make([]byte, 2<<20)...)
	p.do(s, "POST", "/v1/replications", big, map[string]string{"Content-Type": "application/json"})
}

// leafPaths lists the dotted path of every scalar in v.
func leafPaths(v map[string]any, prefix string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(v)) {
		if m, ok := v[k].(map[string]any); ok {
			out = append(out, leafPaths(m, prefix+k+".")...)
			continue
		}
		out = append(out, prefix+k)
	}
	return out
}

// valueEnd finds where the JSON scalar at the start of s ends.
func valueEnd(s string) int {
	if strings.HasPrefix(s, `"`) {
		for i := 1; i < len(s); i++ {
			switch s[i] {
			case '\\':
				i++
			case '"':
				return i + 1
			}
		}
		return len(s)
	}
	if i := strings.IndexAny(s, ",}"); i >= 0 {
		return i
	}
	return len(s)
}

// ids sends every route that takes an id ids that are not ones.
func (p *probe) ids() {
	s := p.section("bad ids (every /v1/replications/{id} route)")
	ids := []string{"not-a-uuid", "0190a4c6-0000-7000-8000-000000000000", "0190A4C6-0000-7000-8000-000000000000",
		"{0190a4c6-0000-7000-8000-000000000000}", "0190a4c600007000800000000000000", "urn:uuid:0190a4c6-0000-7000-8000-000000000000",
		strings.Repeat("a", 10000), "%00", "..%2f..%2fetc%2fpasswd", "' OR 1=1 --", "%FF%FE", "\u0085", "-1", "9999999999999999999999"}
	for range 20 {
		b := make([]byte, 1+p.rng.IntN(40))
		for i := range b {
			b[i] = byte(p.rng.IntN(256))
		}
		ids = append(ids, string(b))
	}
	for _, id := range ids {
		path := "/v1/replications/" + url.PathEscape(id)
		for _, r := range []struct{ method, suffix string }{
			{"GET", ""}, {"GET", "/steps"}, {"GET", "/events"}, {"POST", "/cancel"}, {"POST", "/retry"}, {"DELETE", ""},
		} {
			p.do(s, r.method, path+r.suffix, nil, nil)
		}
	}
}

// queries sends the listing forged cursors and hostile filters.
func (p *probe) queries() {
	s := p.section("bad cursors and filters (GET /v1/replications)")
	forge := func(raw string) string { return base64.RawURLEncoding.EncodeToString([]byte(raw)) }
	const id = "0190a4c6-0000-7000-8000-000000000000"
	var qs []string
	for _, micros := range []string{"-300000000000000000", "-9223372036854775808", "9223372036854775807", "253402300800000000",
		"-62135596800000001", "+1700000000000000", "01700000000000000", "1e15", "0x10", "", "1700000000000000"} {
		qs = append(qs, "cursor="+forge(micros+"_"+id), "cursor="+forge(micros+"_{"+id+"}"))
	}
	for range 100 {
		b := make([]byte, p.rng.IntN(80))
		for i := range b {
			b[i] = byte(p.rng.IntN(256))
		}
		qs = append(qs, "cursor="+url.QueryEscape(string(b)), "cursor="+forge(string(b)))
	}
	for _, q := range []string{"state=bogus", "state=PENDING", "state=pending%00", "limit=0", "limit=201", "limit=-1",
		"limit=1e3", "limit=99999999999999999999", "account_id=12", "account_id=1111111111111", "account_id=%00",
		"ticket=%00", "ticket=" + strings.Repeat("x", 257), "ticket=" + strings.Repeat("x", 100000),
		"ticket=" + url.QueryEscape(strings.Repeat("é", 256)), "ticket=%FF", "cursor=", "limit=1&limit=500", "%zz=1"} {
		qs = append(qs, q)
	}
	for _, q := range qs {
		p.do(s, "GET", "/v1/replications?"+q, nil, nil)
	}
}

// requestIDs sends X-Request-Id values that must not reach logs verbatim.
func (p *probe) requestIDs() {
	s := p.section("hostile X-Request-Id")
	for _, id := range []string{"ok-id_1.2", strings.Repeat("a", 65), strings.Repeat("a", 100000), "x\" level=ERROR msg=\"forged",
		"<script>alert(1)</script>", "caf\u00e9", "\u202eevil", "a b", "${jndi:ldap://x/a}"} {
		p.do(s, "GET", "/v1/replications?limit=1", nil, map[string]string{"X-Request-Id": id})
	}
}

// methods sends random method tokens to every kind of route.
func (p *probe) methods(n int) {
	s := p.section("random HTTP methods")
	paths := []string{"/v1/replications", "/v1/replications/0190a4c6-0000-7000-8000-000000000000",
		"/v1/replications/0190a4c6-0000-7000-8000-000000000000/cancel", "/livez", "/metrics", "/nope"}
	const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~"
	methods := make([]string, n)
	for i := range methods {
		m := make([]byte, 1+p.rng.IntN(20))
		for j := range m {
			m[j] = letters[p.rng.IntN(len(letters))]
		}
		methods[i] = string(m)
	}
	var wg sync.WaitGroup
	work := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range work {
				p.do(s, methods[i], paths[i%len(paths)], nil, nil)
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
}

// slowClients opens n connections that stall half-way through a body and n
// that stall half-way through their headers, and waits for the server to
// end each of them.
func (p *probe) slowClients(n int) {
	bodies := p.section("clients that stall mid-body")
	headers := p.section("clients that stall mid-headers")
	u, err := url.Parse(p.base)
	if err != nil {
		p.fail("parse %s: %v", p.base, err)
		return
	}
	body, _ := json.Marshal(valid)
	var wg sync.WaitGroup
	var mu sync.Mutex
	longest := map[*section]time.Duration{}
	for i := range 2 * n {
		wg.Go(func() {
			s := bodies
			if i >= n {
				s = headers
			}
			start := time.Now()
			conn, err := net.Dial("tcp", u.Host)
			if err != nil {
				p.fail("dial: %v", err)
				return
			}
			defer conn.Close()
			if i < n {
				fmt.Fprintf(conn, "POST /v1/replications HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
					"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", u.Host, p.token, len(body), body[:len(body)/2])
			} else {
				fmt.Fprintf(conn, "GET /v1/replications HTTP/1.1\r\nHost: %s\r\nAuthor", u.Host)
			}
			conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			took := time.Since(start)
			mu.Lock()
			longest[s] = max(longest[s], took)
			mu.Unlock()
			if s == headers {
				// Headers that never end are net/http's to refuse, before
				// any route: it answers a bare 400 or closes the
				// connection once ReadHeaderTimeout (10 s) has passed.
				code := 0
				if err == nil {
					code = resp.StatusCode
					resp.Body.Close()
				}
				p.tally(s, code)
				if took > 15*time.Second {
					p.fail("a client stalled mid-headers was held %s", took)
				}
				return
			}
			if err != nil {
				p.fail("a client stalled mid-body got no answer: %v after %s", err, took)
				return
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			p.record(s, "stalled body", resp.StatusCode, resp.Header, raw)
			// The server's ReadTimeout is 30 s.
			if resp.StatusCode != http.StatusRequestTimeout || took > 35*time.Second {
				p.fail("a client stalled mid-body got %d after %s, want 408 within the read timeout", resp.StatusCode, took)
			}
		})
	}
	wg.Wait()
	fmt.Printf("stalled clients: the last let go %s (mid-body) and %s (mid-headers) after connecting\n",
		longest[bodies].Round(100*time.Millisecond), longest[headers].Round(100*time.Millisecond))
}

// rateLimit spends a second caller's budget of changes, then checks that
// the next change is refused while reads are not.
func (p *probe) rateLimit(token string, limit int) {
	s := p.section(fmt.Sprintf("rate limit: %d+1 changes by one caller", limit))
	first := &probe{base: p.base, token: token, client: p.client}
	path := "/v1/replications/0190a4c6-0000-7000-8000-000000000000/cancel"
	for range limit {
		first.do(s, "POST", path, nil, nil)
	}
	req, _ := http.NewRequest("POST", p.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := p.client.Do(req)
	if err != nil {
		p.fail("the change past the limit: %v", err)
		return
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	p.record(s, "the change past the limit", resp.StatusCode, resp.Header, raw)
	retry, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	fmt.Printf("rate limit: change %d answered %d with Retry-After %q\n", limit+1, resp.StatusCode, resp.Header.Get("Retry-After"))
	if resp.StatusCode != http.StatusTooManyRequests || retry <= 0 {
		p.fail("change %d of a minute answered %d, Retry-After %q; want 429 with Retry-After", limit+1, resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	p.failures = append(p.failures, first.failures...)
	reads := p.section("rate limit: reads by the same caller, changes by another")
	if status, _ := first.do(reads, "GET", "/v1/replications?limit=1", nil, nil); status != http.StatusOK {
		p.fail("a read by the limited caller answered %d", status)
	}
	if status, _ := p.do(reads, "POST", path, nil, nil); status == http.StatusTooManyRequests {
		p.fail("another caller's change answered 429")
	}
}

// metrics returns how many HTTP series /metrics shows, and its size.
func (p *probe) metrics() (series, size int) {
	resp, err := p.client.Get(p.base + "/metrics")
	if err != nil {
		p.fail("GET /metrics: %v", err)
		return 0, 0
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for line := range strings.Lines(string(raw)) {
		if strings.HasPrefix(line, "bucketbridge_http_") {
			series++
		}
	}
	return series, len(raw)
}

// report prints the tally and returns an error when a promise was broken.
func (p *probe) report() error {
	fmt.Println()
	fmt.Println("| what | sent | statuses seen |")
	fmt.Println("|---|---:|---|")
	total := 0
	for _, s := range p.sections {
		var parts []string
		for _, code := range slices.Sorted(maps.Keys(s.statuses)) {
			label := strconv.Itoa(code)
			if code == 0 {
				label = "closed"
			}
			parts = append(parts, fmt.Sprintf("%s ×%d", label, s.statuses[code]))
		}
		fmt.Printf("| %s | %d | %s |\n", s.name, s.sent, cmp.Or(strings.Join(parts, ", "), "—"))
		total += s.sent
	}
	fmt.Printf("\n%d requests; %d broken promises\n", total, len(p.failures))
	for _, f := range p.failures {
		fmt.Println("  -", f)
	}
	if len(p.failures) > 0 {
		return fmt.Errorf("%d broken promises", len(p.failures))
	}
	return nil
}
