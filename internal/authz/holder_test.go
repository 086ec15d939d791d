package authz

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// requesterOn is a grants file making alice requester on account.
func requesterOn(account string) string {
	return "grants:\n  - who: [\"token:alice\"]\n    accounts: [\"" + account + "\"]\n    role: requester\n"
}

const brokenGrants = "grants:\n  - who: [\"alice\"]\n    accounts: [\"1\"]\n    role: requester\n"

// writeFile replaces path's content the way editors and config management
// do, by renaming a new file over it, so a reload never reads half a file.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// mayCreateFrom says whether alice may create requests from account.
func mayCreateFrom(g *Grants, account string) bool {
	return g.Check(TokenIdentity("alice"), ActionCreate, account, acctC) == nil
}

func TestReloadReplacesGrants(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "authz.yaml")
	writeFile(t, path, requesterOn(acctA))
	h, err := NewHolder(path)
	if err != nil {
		t.Fatal(err)
	}
	if !mayCreateFrom(h.Grants(), acctA) {
		t.Fatal("alice may not create from A before the reload")
	}
	writeFile(t, path, requesterOn(acctB))
	if err := h.Reload(); err != nil {
		t.Fatal(err)
	}
	if g := h.Grants(); mayCreateFrom(g, acctA) || !mayCreateFrom(g, acctB) {
		t.Error("after the reload alice's grant did not move from A to B")
	}
}

func TestReloadKeepsGrantsWhenFileIsBad(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		spoil func(t *testing.T, path string)
		want  string
	}{
		{"invalid grants", func(t *testing.T, path string) { writeFile(t, path, brokenGrants) }, "grants[0].accounts[0]"},
		{"not YAML", func(t *testing.T, path string) { writeFile(t, path, "grants: [\n") }, "yaml"},
		{"empty", func(t *testing.T, path string) { writeFile(t, path, "") }, "empty"},
		{"removed", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "authz.yaml")
			writeFile(t, path, requesterOn(acctA))
			h, err := NewHolder(path)
			if err != nil {
				t.Fatal(err)
			}
			tt.spoil(t, path)
			err = h.Reload()
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("reload error %v; want one naming %s and %q", err, path, tt.want)
			}
			if !mayCreateFrom(h.Grants(), acctA) {
				t.Error("a bad file replaced the grants in force")
			}
		})
	}
}

func TestNewHolderRefusesBadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := NewHolder(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("a missing file was accepted")
	}
	path := filepath.Join(dir, "authz.yaml")
	writeFile(t, path, brokenGrants)
	if _, err := NewHolder(path); err == nil || !strings.Contains(err.Error(), "grants[0].who[0]") {
		t.Errorf("got %v; want the invalid principal named", err)
	}
}

func TestFixedHolderHasNothingToReload(t *testing.T) {
	t.Parallel()
	h := Fixed(AllowAll())
	if err := h.Reload(); err != nil || h.Path() != "" || !h.Grants().AllowsAll() {
		t.Errorf("reload %v, path %q, allows all %v", err, h.Path(), h.Grants().AllowsAll())
	}
}

// Readers deciding while the file changes and reloads race each other must
// always see one whole version of the grants: alice is requester on A or on
// B, never both and never neither; a broken version is never seen at all.
func TestConcurrentReadersDuringReloads(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "authz.yaml")
	writeFile(t, path, requesterOn(acctA))
	h, err := NewHolder(path)
	if err != nil {
		t.Fatal(err)
	}

	done := make(chan struct{})
	var readers, reloaders sync.WaitGroup
	var reads, failedReloads atomic.Int64
	for range 8 {
		readers.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				g := h.Grants()
				if a, b := mayCreateFrom(g, acctA), mayCreateFrom(g, acctB); a == b {
					t.Errorf("a reader saw alice requester on A: %v, on B: %v", a, b)
					return
				}
				reads.Add(1)
			}
		})
	}
	stopReloading := make(chan struct{})
	for range 3 {
		reloaders.Go(func() {
			for {
				select {
				case <-stopReloading:
					return
				default:
				}
				if h.Reload() != nil {
					failedReloads.Add(1)
				}
			}
		})
	}
	versions := []string{requesterOn(acctB), brokenGrants, requesterOn(acctA)}
	for i := range 60 {
		writeFile(t, path, versions[i%len(versions)])
		if err := h.Reload(); err != nil && i%len(versions) != 1 {
			t.Errorf("reload of a valid version failed: %v", err)
		}
	}
	close(stopReloading)
	reloaders.Wait()
	writeFile(t, path, requesterOn(acctB))
	if err := h.Reload(); err != nil {
		t.Fatal(err)
	}
	close(done)
	readers.Wait()
	if g := h.Grants(); !mayCreateFrom(g, acctB) || mayCreateFrom(g, acctA) {
		t.Error("the last valid version is not in force")
	}
	if reads.Load() == 0 {
		t.Error("no reader decided anything")
	}
	t.Logf("%d decisions, %d reloads refused a broken file", reads.Load(), failedReloads.Load())
}
