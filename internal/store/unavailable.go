package store

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/bucketbridge/bucketbridge/internal/provision"
)

// unavailable marks err as provision.ErrUnavailable when it says the
// database could not be reached, so that callers can tell "try again
// later" from a fault; any other error (nil too) is returned as it is.
func unavailable(err error) error {
	if err == nil || errors.Is(err, provision.ErrUnavailable) || !unreachable(err) {
		return err
	}
	return &unavailableError{err: err}
}

// unavailableError is an error of an unreachable database; it is
// provision.ErrUnavailable and still unwraps to the driver's error.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string        { return e.err.Error() }
func (e *unavailableError) Unwrap() error        { return e.err }
func (e *unavailableError) Is(target error) bool { return target == provision.ErrUnavailable }

// unreachable reports whether err comes from not reaching the database,
// rather than from what a statement asked: a connection refused or cut,
// a server shutting down or starting up, no connection free before the
// deadline.
// https://www.postgresql.org/docs/current/errcodes-appendix.html
func unreachable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P01", // admin_shutdown: the server is stopping
			"57P02", // crash_shutdown
			"57P03", // cannot_connect_now: starting up or shutting down
			"53300": // too_many_connections
			return true
		}
		return strings.HasPrefix(pgErr.Code, "08") // connection_exception
	}
	var (
		connect *pgconn.ConnectError
		netErr  net.Error
	)
	return errors.As(err, &connect) || errors.As(err, &netErr) ||
		errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
