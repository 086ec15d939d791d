package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

// The part of README.md whose shell blocks a reader runs one after another
// against make run, and the address they expect it on.
const (
	readmeFrom    = "## Walkthrough (dev mode)"
	readmeTo      = "## Callbacks"
	readmeAddress = "http://localhost:8080"
)

// TestReadmeRunsAsPrinted runs the README's walkthroughs as a reader does:
// every shell block, as printed, one after another in one bash, against a
// dev-mode server (restarted with the settings of a block that says make
// run), and compares what each block prints with the output printed under
// it. A second reader stops and starts make run before every block, on the
// same database: nothing they see may change.
func TestReadmeRunsAsPrinted(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the README's examples need %s (Debian: apt-get install %s): %v", tool, tool, err)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeBlocks(t, string(readme))
	for _, restartEachTime := range []bool{false, true} {
		t.Run(fmt.Sprintf("restarted before every block=%t", restartEachTime), func(t *testing.T) {
			t.Parallel()
			followReadme(t, blocks, restartEachTime)
		})
	}
}

// followReadme runs blocks in order, in one shell, as one reader does.
func followReadme(t *testing.T, blocks []readmeBlock, restartEachTime bool) {
	// The reader's make run always answers at the same address.
	databaseURL, addr := storetest.NewDatabase(t), freeAddr(t)
	sh := startShell(t)
	var srv *testServer
	settings := map[string]string{}
	makeRun := func() {
		if srv != nil {
			if err := srv.stop(); err != nil {
				t.Fatalf("stopping the server: %v", err)
			}
		}
		env := map[string]string{"DATABASE_URL": databaseURL, "BB_CLOUD": "fake", "BB_LISTEN": addr}
		for k, v := range settings {
			env[k] = v
		}
		srv = startServer(t, env)
	}
	makeRun()
	for _, b := range blocks {
		if b.makeRun != nil {
			settings = b.makeRun
			makeRun()
			continue
		}
		if restartEachTime {
			makeRun()
		}
		script := strings.ReplaceAll(b.script, readmeAddress, srv.base)
		out, err := sh.run(script)
		if err != nil {
			t.Fatalf("README.md:%d: %v\n%s", b.line, err, b.script)
		}
		if b.want == nil {
			continue
		}
		if diff := b.want.diff(out); diff != "" {
			t.Errorf("README.md:%d prints something else than the README shows (-README +printed):\n%s\n%s",
				b.line, diff, b.script)
		}
	}
}

// readmeBlock is one shell block of the README: a script, or make run with
// some settings; and the output printed under it, when there is one.
type readmeBlock struct {
	line    int
	script  string
	makeRun map[string]string
	want    *printed
}

var makeRunLine = regexp.MustCompile(`^((?:[A-Z_]+=\S+ )*)make run\s*(#.*)?$`)

// readmeBlocks returns the shell blocks between readmeFrom and readmeTo. A
// block printed right under a shell block, with no line between them, is
// what that block prints.
func readmeBlocks(t *testing.T, readme string) []readmeBlock {
	t.Helper()
	start, end := strings.Index(readme, "\n"+readmeFrom+"\n"), strings.Index(readme, "\n"+readmeTo+"\n")
	if start < 0 || end < start {
		t.Fatalf("README.md has no %q followed by %q", readmeFrom, readmeTo)
	}
	firstLine := strings.Count(readme[:start+1], "\n") + 1
	lines := strings.Split(readme[start+1:end], "\n")
	var blocks []readmeBlock
	fence := func(i int) (body string, next int) {
		j := i + 1
		for j < len(lines) && lines[j] != "```" {
			j++
		}
		if j == len(lines) {
			t.Fatalf("README.md:%d: the block is never closed", firstLine+i)
		}
		return strings.Join(lines[i+1:j], "\n"), j + 1
	}
	for i := 0; i < len(lines); i++ {
		if lines[i] != "```sh" {
			continue
		}
		b := readmeBlock{line: firstLine + i}
		b.script, i = fence(i)
		if m := makeRunLine.FindStringSubmatch(b.script); m != nil {
			b.makeRun = map[string]string{}
			for _, kv := range strings.Fields(m[1]) {
				k, v, _ := strings.Cut(kv, "=")
				if _, err := os.Stat(filepath.Join("../..", v)); err == nil {
					v = filepath.Join("../..", v) // a file of the repository, named from its root
				}
				b.makeRun[k] = v
			}
		}
		if i < len(lines) && (lines[i] == "```" || lines[i] == "```json") {
			isJSON := lines[i] == "```json"
			var out string
			out, i = fence(i)
			b.want = &printed{text: out, json: isJSON}
			if b.makeRun != nil {
				t.Fatalf("README.md:%d: make run is shown with an output", b.line)
			}
		}
		i-- // the loop's i++ moves to the line after the block
		blocks = append(blocks, b)
	}
	if len(blocks) == 0 {
		t.Fatal("README.md has no shell blocks to run")
	}
	return blocks
}

// printed is a block's output: lines of text, or JSON values, which the
// README may lay out more compactly than jq does.
type printed struct {
	text string
	json bool
}

// volatile is what differs from run to run: it is replaced on both sides
// before they are compared. Ids are numbered in the order they appear, so
// that the same id twice must still be the same id.
var volatile = []struct {
	re *regexp.Regexp
	to string
}{
	{regexp.MustCompile(`[\w.-]+/\d+/[0-9a-f]{4}#\d+`), "<worker>"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`), "<time>"},
	{regexp.MustCompile(`\b\d+ms\b`), "<n>ms"},
	{regexp.MustCompile(`("latency_ms": *)\d+`), "${1}0"},
}

var uuid = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

func normalize(s string) string {
	for _, v := range volatile {
		s = v.re.ReplaceAllString(s, v.to)
	}
	seen := map[string]string{}
	s = uuid.ReplaceAllStringFunc(s, func(id string) string {
		if _, ok := seen[id]; !ok {
			seen[id] = fmt.Sprintf("<id%d>", len(seen)+1)
		}
		return seen[id]
	})
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		lines = append(lines, strings.TrimRight(l, " \r"))
	}
	return strings.Join(lines, "\n")
}

// diff compares what a block printed with what the README shows.
func (p *printed) diff(got string) string {
	want, got := normalize(p.text), normalize(got)
	if !p.json {
		return cmp.Diff(want, got)
	}
	wantValues, err := jsonValues(want)
	if err != nil {
		return fmt.Sprintf("the README's JSON does not parse: %v", err)
	}
	gotValues, err := jsonValues(got)
	if err != nil {
		return fmt.Sprintf("the block printed no JSON (%v):\n%s", err, got)
	}
	return cmp.Diff(wantValues, gotValues)
}

func jsonValues(s string) ([]any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	var values []any
	for {
		var v any
		if err := dec.Decode(&v); errors.Is(err, io.EOF) {
			return values, nil
		} else if err != nil {
			return nil, err
		}
		values = append(values, v)
	}
}

// shell is one bash that runs scripts one after another, as a reader's
// terminal does: what one script sets, the next sees.
type shell struct {
	dir    string // where the scripts are written
	stdin  io.Writer
	stdout chan string
	stderr chan string
	n      int
}

// shellDone ends what a script printed, on stdout and on stderr.
const shellDone = "@@done"

// startShell starts a bash that lives until the test ends.
func startShell(t *testing.T) *shell {
	t.Helper()
	cmd := exec.Command("bash", "--noprofile", "--norc")
	cmd.Dir = "../.." // the top of the repository, where a reader runs them
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "LANG=C.UTF-8"}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	sh := &shell{dir: t.TempDir(), stdin: stdin, stdout: make(chan string), stderr: make(chan string)}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	for r, lines := range map[io.Reader]chan string{stdout: sh.stdout, stderr: sh.stderr} {
		go func() {
			s := bufio.NewScanner(r)
			s.Buffer(nil, 1<<20)
			for s.Scan() {
				lines <- s.Text()
			}
			close(lines)
		}()
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Error(err)
		}
		cmd.Wait() //nolint:errcheck // killed
	})
	return sh
}

// run runs script in the shell and returns what it printed. A script that
// writes to stderr or whose last command fails is an error, with what it
// wrote.
func (sh *shell) run(script string) (string, error) {
	sh.n++
	file := filepath.Join(sh.dir, fmt.Sprintf("block-%d.sh", sh.n))
	if err := os.WriteFile(file, []byte(script+"\n"), 0o600); err != nil {
		return "", err
	}
	fmt.Fprintf(sh.stdin, ". %q </dev/null; s=$?; echo %s >&2; printf '\\n%s %%d\\n' $s\n", file, shellDone, shellDone)
	stdout, status, err := readUntil(sh.stdout, shellDone)
	if err != nil {
		return stdout, err
	}
	stderr, _, err := readUntil(sh.stderr, shellDone)
	if err != nil {
		return stdout, err
	}
	if stderr != "" || status != "0" {
		return stdout, fmt.Errorf("exit status %s, stderr:\n%s\nstdout:\n%s", status, stderr, stdout)
	}
	return strings.TrimSuffix(stdout, "\n"), nil
}

// readUntil collects lines until one starts with marker, and returns them
// and the rest of that line.
func readUntil(lines <-chan string, marker string) (text, rest string, err error) {
	var b strings.Builder
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return b.String(), "", errors.New("the shell exited")
			}
			if after, found := strings.CutPrefix(l, marker); found {
				return b.String(), strings.TrimSpace(after), nil
			}
			b.WriteString(l + "\n")
		case <-timeout:
			return b.String(), "", errors.New("the block did not finish within 2 minutes")
		}
	}
}
