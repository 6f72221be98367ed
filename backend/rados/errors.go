package rados

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/lunway/lunway/backend"
)

var (
	// ErrConfig: the connection options are wrong (a missing file, a
	// rejected key, an unknown pool). Not transient: retrying does not help.
	ErrConfig = errors.New("rados: bad configuration")
	// ErrTooLarge: an object or write exceeds what one RADOS operation may
	// carry (Options.MaxObjectBytes).
	ErrTooLarge = errors.New("rados: object too large")
	// ErrTooMany: a List matched more names than Options.MaxListNames.
	ErrTooMany = errors.New("rados: too many objects to list")
)

// OptionError is an error about one option, named as in the daemon's
// configuration ("keyring", "mon_host", "pool", "image", ...). It wraps
// ErrConfig, or, when Transient, backend.ErrUnavailable: the option looks
// right but the cluster could not be reached through it, and a retry may
// succeed.
type OptionError struct {
	Option    string
	Msg       string
	Transient bool
}

func (e *OptionError) Error() string { return "ceph " + e.Option + ": " + e.Msg }

// Unwrap returns ErrConfig or, for a transient failure,
// backend.ErrUnavailable.
func (e *OptionError) Unwrap() error {
	if e.Transient {
		return backend.ErrUnavailable
	}
	return ErrConfig
}

// OptionErr returns a configuration *OptionError about option.
func OptionErr(option, format string, args ...any) error {
	return &OptionError{Option: option, Msg: fmt.Sprintf(format, args...)}
}

func optionErr(option, format string, args ...any) error { return OptionErr(option, format, args...) }

// Error is a failed librados call. It wraps the errno and the backend
// sentinel the errno maps to (see Sentinel), so that both
// errors.Is(err, syscall.ETIMEDOUT) and errors.Is(err, backend.ErrUnavailable)
// hold.
type Error struct {
	// Op is the operation ("read", "put", "connect", ...), Name the object
	// or pool it was about (may be empty).
	Op, Name string
	// Errno is the error librados returned, positive.
	Errno syscall.Errno
}

func (e *Error) Error() string {
	if e.Name == "" {
		return fmt.Sprintf("rados %s: %v (errno %d)", e.Op, e.Errno, int(e.Errno))
	}
	return fmt.Sprintf("rados %s %s: %v (errno %d)", e.Op, e.Name, e.Errno, int(e.Errno))
}

// Unwrap returns the errno and, when it maps to one, the backend sentinel.
func (e *Error) Unwrap() []error {
	if s := Sentinel(e.Errno); s != nil {
		return []error{e.Errno, s}
	}
	return []error{e.Errno}
}

// Transient reports whether errno means the cluster is unreachable or
// too slow, as opposed to a request it refused: ETIMEDOUT (an operation
// or mount timeout), ENOTCONN (not connected), ESHUTDOWN (the client was
// blocklisted or shut down), connection errors, EAGAIN, EINTR, ECANCELED
// and EBUSY.
func Transient(errno syscall.Errno) bool {
	switch errno {
	case syscall.ETIMEDOUT, syscall.ENOTCONN, syscall.ESHUTDOWN, syscall.ECONNREFUSED,
		syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EHOSTUNREACH, syscall.ENETUNREACH,
		syscall.ENETDOWN, syscall.EHOSTDOWN, syscall.EPIPE, syscall.EAGAIN, syscall.EINTR,
		syscall.ECANCELED, syscall.EBUSY:
		return true
	}
	return false
}

// Sentinel maps errno to the backend sentinel it means, or nil: ENOENT is
// backend.ErrNotFound, ENOSPC and EDQUOT backend.ErrNoSpace, and transient
// errors (see Transient) backend.ErrUnavailable.
func Sentinel(errno syscall.Errno) error {
	switch {
	case errno == syscall.ENOENT:
		return backend.ErrNotFound
	case errno == syscall.ENOSPC || errno == syscall.EDQUOT:
		return backend.ErrNoSpace
	case Transient(errno):
		return backend.ErrUnavailable
	}
	return nil
}

// Errno extracts the errno from an error librados (or go-ceph) returned:
// a syscall.Errno, an *Error, or a go-ceph error (which reports negative
// codes through ErrorCode). It returns 0 when err carries none.
func Errno(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	var coded interface{ ErrorCode() int }
	if errors.As(err, &coded) {
		c := coded.ErrorCode()
		if c < 0 {
			c = -c
		}
		return syscall.Errno(c)
	}
	return 0
}

// wrap turns a librados failure into an *Error; errors without an errno
// are wrapped as they are.
func wrap(op, name string, err error) error {
	if err == nil {
		return nil
	}
	if n := Errno(err); n != 0 {
		return &Error{Op: op, Name: name, Errno: n}
	}
	return fmt.Errorf("rados %s %s: %w", op, name, err)
}

// errnoOf converts a negative librados return code.
func errnoOf(ret int) syscall.Errno {
	if ret < 0 {
		ret = -ret
	}
	return syscall.Errno(ret)
}
