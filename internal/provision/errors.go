package provision

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrNotFound means no replication has the given id.
	ErrNotFound = errors.New("replication not found")
	// ErrBadCursor means a listing cursor was not issued by this service.
	ErrBadCursor = errors.New("cursor is not one this service issued")
	// ErrIdempotencyKeyReused means an Idempotency-Key was sent again with a
	// different body.
	ErrIdempotencyKeyReused = errors.New("idempotency key reused with a different request body")
)

// FieldError names one invalid input field and what is wrong with it.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError lists every invalid field of a request at once.
type ValidationError struct {
	Errors []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, f := range e.Errors {
		parts[i] = f.Field + ": " + f.Message
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

// add records a problem with field; it keeps only the first per field.
func (e *ValidationError) add(field, format string, args ...any) {
	for _, f := range e.Errors {
		if f.Field == field {
			return
		}
	}
	e.Errors = append(e.Errors, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// orNil returns e when it holds at least one field error.
func (e *ValidationError) orNil() error {
	if len(e.Errors) == 0 {
		return nil
	}
	return e
}

// DuplicateError means a live request already replicates the same source
// bucket and prefix into the same destination bucket. Its accounts let the
// API decide whether the caller may be told which request that is.
type DuplicateError struct {
	// ExistingID is the live request, "" when it finished before it could
	// be read.
	ExistingID string
	// SourceAccountID and DestinationAccountID are the live request's.
	SourceAccountID      string
	DestinationAccountID string
}

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("replication %s already covers this source bucket, destination bucket and prefix", e.ExistingID)
}

// StateError means the request is in a state that does not allow the action.
type StateError struct {
	ID     string
	State  State
	Action string
}

func (e *StateError) Error() string {
	return fmt.Sprintf("cannot %s replication %s: it is %s", e.Action, e.ID, e.State)
}
