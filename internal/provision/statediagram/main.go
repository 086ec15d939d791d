// Command statediagram rewrites the state diagram in a Markdown file (the
// text between provision.DiagramStart and provision.DiagramEnd) from the
// lifecycle's transition table. go generate ./internal/provision runs it on
// docs/ARCHITECTURE.md.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/bucketbridge/bucketbridge/internal/provision"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: statediagram FILE.md")
		os.Exit(2)
	}
	if err := rewrite(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "statediagram:", err)
		os.Exit(1)
	}
}

func rewrite(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	doc := string(b)
	before, rest, ok := strings.Cut(doc, provision.DiagramStart+"\n")
	_, after, ok2 := strings.Cut(rest, provision.DiagramEnd)
	if !ok || !ok2 {
		return fmt.Errorf("%s has no %q … %q markers", path, provision.DiagramStart, provision.DiagramEnd)
	}
	out := before + provision.DiagramStart + "\n" + provision.DiagramBlock() + provision.DiagramEnd + after
	return os.WriteFile(path, []byte(out), 0o644)
}
