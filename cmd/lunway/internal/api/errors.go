package api

import "errors"

// Sentinel errors of changes; a Backend wraps them (with Error to name a
// field) and the Handler maps them to HTTP statuses.
var (
	// ErrNotFound: the target, LUN, portal group, session or snapshot does
	// not exist (404).
	ErrNotFound = errors.New("not found")
	// ErrExists: the thing to create already exists (409).
	ErrExists = errors.New("already exists")
	// ErrInUse: the change conflicts with the current state, e.g. a
	// snapshot that has clones, or data beyond a shrunken end (409).
	ErrInUse = errors.New("in use")
	// ErrNotSupported: the change is not possible live or not for this
	// kind of LUN, e.g. a snapshot of a file LUN (400).
	ErrNotSupported = errors.New("not supported")
	// ErrInvalid: the request is malformed (400).
	ErrInvalid = errors.New("invalid request")
	// ErrUnavailable: the backend or the daemon cannot serve it now; try
	// again later (503).
	ErrUnavailable = errors.New("unavailable")
	// ErrUnauthorized: a TCP request without the right bearer token (401).
	ErrUnauthorized = errors.New("unauthorized")
)

// Error is a failed request: Err (wrapping one of the sentinels) and the
// request or configuration field it concerns.
type Error struct {
	Field string
	Err   error
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Err.Error()
	}
	return e.Field + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }
