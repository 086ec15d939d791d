package provision

import "errors"

// ErrUnavailable means the database could not be reached in time (refused,
// gone mid-statement, shutting down, or slower than the caller's deadline).
// Nothing is known to have been written; the same call may be made again
// once it is back.
var ErrUnavailable = errors.New("database unavailable")
