package backend

import (
	"context"
	"time"
)

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Name    string
	Size    int64
	ModTime time.Time // zero when the store does not keep it
}

// Store is a flat namespace of named, immutable-by-default objects, shaped so
// that S3 and RADOS fit it naturally.
//
// Object names are non-empty, at most MaxNameLen bytes, of the characters
// [A-Za-z0-9._/-], do not start with '/' and contain no "..", "//" or "./"
// path elements (ValidName checks). Stores may map '/' to a directory.
//
// All methods may be called concurrently. Every method honours ctx: when it
// is done the call returns ctx.Err() (wrapped), and the operation either
// happened completely or not at all. Transient failures (unreachable,
// timed out, throttled) are reported as wrapping ErrUnavailable.
type Store interface {
	// ReadAt reads len(p) bytes of object name starting at off. It returns
	// the number of bytes read; n < len(p) only with an error (io.EOF when
	// the object ends first). A missing object gives ErrNotFound.
	ReadAt(ctx context.Context, name string, p []byte, off int64) (n int, err error)

	// Put creates or replaces object name with data, atomically: readers see
	// the old object or the new one, never a mix. When Put returns nil the
	// object is durable. The store does not retain data after returning.
	Put(ctx context.Context, name string, data []byte) error

	// Delete removes object name. Deleting a missing object is not an error.
	Delete(ctx context.Context, name string) error

	// List calls fn for every object whose name starts with prefix, in
	// lexical order of name. If fn returns an error, List stops and returns
	// it. Objects created or deleted during the listing may or may not be
	// reported.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error

	// Stat describes object name, or returns ErrNotFound.
	Stat(ctx context.Context, name string) (ObjectInfo, error)

	// Close releases the store. Later calls return ErrClosed.
	Close() error
}

// Overwriter is an optional capability of stores that can modify an object
// in place (local files, RADOS): WriteAt writes p at off of object name,
// creating the object if it does not exist and extending it as needed.
// Each call is atomic per 512-byte aligned sector but not as a whole, and
// is durable when it returns.
type Overwriter interface {
	WriteAt(ctx context.Context, name string, p []byte, off int64) error
}

// MaxNameLen bounds object names (RADOS' default limit is far higher; S3's is 1024).
const MaxNameLen = 200
