package backend

import (
	"errors"
	"fmt"
	"strings"

	"github.com/lunway/lunway/blockdev"
)

var (
	// ErrNotFound: the object does not exist.
	ErrNotFound = errors.New("backend: object not found")
	// ErrInvalidName: the object name breaks the rules of Store.
	ErrInvalidName = errors.New("backend: invalid object name")

	// The errors below are blockdev's, so that a Device built on a Store
	// passes them up unchanged and the SCSI layer maps them.

	// ErrUnavailable: transient failure; retrying later may succeed.
	ErrUnavailable = blockdev.ErrUnavailable
	// ErrNoSpace: the store is full.
	ErrNoSpace = blockdev.ErrNoSpace
	// ErrClosed: the store was closed.
	ErrClosed = blockdev.ErrClosed
	// ErrCorrupt: an object failed validation.
	ErrCorrupt = blockdev.ErrCorrupt
)

// ValidName reports whether name follows the naming rules of Store, with an
// error that says why not.
func ValidName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("%w: length %d", ErrInvalidName, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '-' || c == '/'
		if !ok {
			return fmt.Errorf("%w: %q has byte %#x", ErrInvalidName, name, c)
		}
	}
	if name[0] == '/' || name[len(name)-1] == '/' {
		return fmt.Errorf("%w: %q starts or ends with /", ErrInvalidName, name)
	}
	for _, el := range strings.Split(name, "/") {
		if el == "" || el == "." || el == ".." {
			return fmt.Errorf("%w: %q has an empty, . or .. element", ErrInvalidName, name)
		}
	}
	return nil
}
