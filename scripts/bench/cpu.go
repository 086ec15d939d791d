package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// clockTick is the unit of the CPU times in /proc/<pid>/stat (USER_HZ,
// 100 on every Linux).
const clockTick = 10 * time.Millisecond

// cpuMeter reads the CPU time a server process and the Postgres serving it
// have used, when Postgres runs on this machine: that is what bounds the
// throughput of two cores, whatever the workers.
type cpuMeter struct {
	server     int
	postmaster int
}

// cpuUse is CPU time used by the server and by Postgres (every backend).
type cpuUse struct{ server, postgres time.Duration }

// newCPUMeter finds the postmaster behind dbURL through the process of a
// connection's backend, read while the connection is open (the backend
// exits with it); it fails when Postgres is not a local process.
func newCPUMeter(ctx context.Context, server int, dbURL string) (*cpuMeter, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	var backend int
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&backend); err != nil {
		return nil, err
	}
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", backend)); err != nil || strings.TrimSpace(string(comm)) != "postgres" {
		return nil, errors.New("postgres is not a process of this machine")
	}
	st, err := procStat(backend)
	if err != nil {
		return nil, err
	}
	ppid, err := strconv.Atoi(st[1])
	if err != nil {
		return nil, err
	}
	return &cpuMeter{server: server, postmaster: ppid}, nil
}

// read returns the CPU time used so far. Postgres's is the postmaster's,
// that of the backends it has reaped and that of those still running.
func (m *cpuMeter) read() (cpuUse, error) {
	srv, err := cpuTime(m.server)
	if err != nil {
		return cpuUse{}, err
	}
	pg, err := cpuTime(m.postmaster)
	if err != nil {
		return cpuUse{}, err
	}
	procs, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return cpuUse{}, err
	}
	for _, p := range procs {
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		st, err := procStat(pid)
		if err != nil || st[1] != strconv.Itoa(m.postmaster) {
			continue // gone, or not a backend
		}
		if t, err := cpuTime(pid); err == nil {
			pg += t
		}
	}
	return cpuUse{server: srv, postgres: pg}, nil
}

// cpuTime is the user and system time of pid and of its reaped children.
func cpuTime(pid int) (time.Duration, error) {
	st, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, f := range st[11:15] { // utime, stime, cutime, cstime
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		total += time.Duration(n) * clockTick
	}
	return total, nil
}

// procStat returns the fields of /proc/<pid>/stat after the command name,
// the first being the state and the second the parent's pid.
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 15 {
		return nil, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	return f, nil
}
