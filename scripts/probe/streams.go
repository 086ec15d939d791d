package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// heartbeatWait is how long a stream may go without its heartbeat comment:
// the server sends one every 15 s.
const heartbeatWait = 20 * time.Second

// openStream is an event stream the probe holds open.
type openStream struct {
	body  io.ReadCloser
	lines *bufio.Scanner
}

// streams floods the server with event streams on one unfinished request,
// alternating the callers, and checks what the caps promise: a stream
// beyond them is a 429 problem with Retry-After, and exactly expectOpen
// streams open (when it is not negative). It then checks that every open
// stream gets its heartbeat, says "holding" and holds the streams until
// the server ends them (shutdown) or hold has passed, and checks that each
// ended cleanly.
func (p *probe) streams(tokens []string, n, expectOpen int, hold time.Duration) {
	s := p.section(fmt.Sprintf("event streams: %d opened at once on one request by %d callers", n, len(tokens)))
	body := map[string]any{}
	for k, v := range valid {
		body[k] = v
	}
	delete(body, "callback_url")
	body["dry_run"] = false
	// A prefix of its own, so that no earlier request holds the route.
	body["rule"] = map[string]any{"prefix": fmt.Sprintf("probe-streams-%d/", time.Now().UnixNano())}
	raw, _ := json.Marshal(body)
	status, created := p.do(p.section("event streams: the request they follow"), "POST", "/v1/replications", raw,
		map[string]string{"Content-Type": "application/json"})
	var r struct{ ID string }
	if json.Unmarshal(created, &r); status != http.StatusAccepted || r.ID == "" {
		p.fail("create the request to follow: %d %.200s", status, created)
		return
	}
	client := &http.Client{} // no timeout: streams last
	var (
		mu   sync.Mutex
		open []*openStream
		wg   sync.WaitGroup
	)
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(context.Background(), "GET", p.base+"/v1/replications/"+r.ID+"/events", nil)
			req.Header.Set("Authorization", "Bearer "+tokens[i%len(tokens)])
			req.Header.Set("Accept", "text/event-stream")
			resp, err := client.Do(req)
			if err != nil {
				p.fail("open stream %d: %v", i, err)
				return
			}
			if resp.StatusCode == http.StatusOK {
				p.tally(s, resp.StatusCode)
				mu.Lock()
				open = append(open, &openStream{body: resp.Body, lines: bufio.NewScanner(resp.Body)})
				mu.Unlock()
				return
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			p.record(s, "stream "+fmt.Sprint(i), resp.StatusCode, resp.Header, raw)
			if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
				p.fail("stream %d refused with %d, Retry-After %q; want 429 with Retry-After", i, resp.StatusCode, resp.Header.Get("Retry-After"))
			}
		})
	}
	wg.Wait()
	fmt.Printf("event streams: %d of %d open\n", len(open), n)
	if expectOpen >= 0 && len(open) != expectOpen {
		p.fail("%d streams opened, want %d (the caps)", len(open), expectOpen)
	}
	start, beats := time.Now(), 0
	for i, st := range open {
		if !st.heartbeat(time.Until(start.Add(heartbeatWait))) {
			p.fail("stream %d got no heartbeat within %s", i, heartbeatWait)
			continue
		}
		beats++
	}
	fmt.Printf("event streams: %d of %d got a heartbeat within %s\n", beats, len(open), time.Since(start).Round(100*time.Millisecond))
	fmt.Println("holding", len(open), "streams")
	ended := make(chan error, len(open))
	for _, st := range open {
		go func() {
			for st.lines.Scan() {
			}
			ended <- st.lines.Err()
		}()
	}
	timer := time.NewTimer(hold)
	defer timer.Stop()
	for i := range open {
		select {
		case err := <-ended:
			if err != nil {
				p.fail("a stream ended with %v, not cleanly", err)
			}
		case <-timer.C:
			fmt.Printf("event streams: %d still open after %s; closing them\n", len(open)-i, hold)
			for _, st := range open {
				st.body.Close()
			}
			return
		}
	}
	fmt.Printf("event streams: the server ended all %d streams cleanly\n", len(open))
}

// heartbeat reads the stream until a keep-alive comment, within wait.
func (st *openStream) heartbeat(wait time.Duration) bool {
	got := make(chan bool, 1)
	go func() {
		for st.lines.Scan() {
			if strings.HasPrefix(st.lines.Text(), ": keep-alive") {
				got <- true
				return
			}
		}
		got <- false
	}()
	select {
	case ok := <-got:
		return ok
	case <-time.After(max(wait, 0)):
		return false
	}
}
