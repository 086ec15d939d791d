package authz

import (
	"sync"
	"sync/atomic"
)

// Holder holds the grants in force and replaces them on Reload, so that a
// grants file can change (on SIGHUP) without a restart. Readers never wait:
// each takes the grants of the moment and decides with them alone.
type Holder struct {
	path    string
	current atomic.Pointer[Grants]
	// reload serializes reloads, so that a slow reload that read the file
	// before an edit cannot replace the grants of a later one.
	reload sync.Mutex
}

// NewHolder reads the grants file at path; it fails when the file is missing
// or invalid, since there is nothing to fall back on yet.
func NewHolder(path string) (*Holder, error) {
	g, err := ReadGrants(path)
	if err != nil {
		return nil, err
	}
	h := &Holder{path: path}
	h.current.Store(g)
	return h, nil
}

// Fixed holds g for good: for AllowAll grants, which have no file.
func Fixed(g *Grants) *Holder {
	h := &Holder{}
	h.current.Store(g)
	return h
}

// Grants returns the grants in force.
func (h *Holder) Grants() *Grants { return h.current.Load() }

// Path is the grants file reloads read, or "" for Fixed grants.
func (h *Holder) Path() string { return h.path }

// Reload reads the grants file again. When it is missing or invalid, the
// grants in force stay, and the error says why, for the caller to log: a
// typo in an edit must not lock everyone out. Fixed grants have no file, and
// reloading them does nothing.
func (h *Holder) Reload() error {
	if h.path == "" {
		return nil
	}
	h.reload.Lock()
	defer h.reload.Unlock()
	g, err := ReadGrants(h.path)
	if err != nil {
		return err
	}
	h.current.Store(g)
	return nil
}
