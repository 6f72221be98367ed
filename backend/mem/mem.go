package mem

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/blockdev"
)

// DefaultMaxObjectBytes is the default bound on one object's size.
const DefaultMaxObjectBytes = 1 << 30

// Options configure a Store. The zero value (or nil) means defaults.
type Options struct {
	// DisableOverwriter hides backend.Overwriter: the Store then offers
	// only whole-object Put, like S3.
	DisableOverwriter bool
	// CapacityBytes bounds the sum of all object sizes; a Put or WriteAt
	// that would exceed it fails with backend.ErrNoSpace and changes
	// nothing. Zero means unbounded.
	CapacityBytes int64
	// MaxObjectBytes bounds one object's size (backend.ErrNoSpace beyond
	// it). Zero means DefaultMaxObjectBytes.
	MaxObjectBytes int64
}

// Validate reports whether the options are usable.
func (o *Options) Validate() error {
	if o.CapacityBytes < 0 {
		return fmt.Errorf("mem: CapacityBytes %d is negative", o.CapacityBytes)
	}
	if o.MaxObjectBytes < 0 {
		return fmt.Errorf("mem: MaxObjectBytes %d is negative", o.MaxObjectBytes)
	}
	return nil
}

func (o *Options) withDefaults() Options {
	var out Options
	if o != nil {
		out = *o
	}
	if out.MaxObjectBytes == 0 {
		out.MaxObjectBytes = DefaultMaxObjectBytes
	}
	return out
}

// Store is an in-memory backend.Store. The value New returns implements
// backend.Overwriter unless Options.DisableOverwriter was set.
type Store interface {
	backend.Store

	// Clone returns an independent deep copy of the store's objects with
	// the same options: later changes to either do not show in the other.
	// Cloning a closed store fails with backend.ErrClosed.
	Clone() (Store, error)

	// Usage reports the number of objects and the sum of their sizes.
	Usage() (objects int, bytes int64, err error)
}

// New returns an empty store. It panics only if opts fail Validate, which
// is a programming error; use opts.Validate first for untrusted options.
func New(opts *Options) Store {
	o := opts.withDefaults()
	if err := o.Validate(); err != nil {
		panic(err)
	}
	s := &store{opts: o}
	s.mu.objects = make(map[string]*object)
	if o.DisableOverwriter {
		return &putOnly{s: s}
	}
	return s
}

type object struct {
	data []byte
	mod  time.Time
}

// store implements Store and backend.Overwriter.
type store struct {
	opts Options
	mu   struct {
		sync.RWMutex
		objects map[string]*object
		used    int64 // sum of len(data)
		closed  bool
	}
}

var (
	_ Store              = (*store)(nil)
	_ backend.Overwriter = (*store)(nil)
	_ Store              = (*putOnly)(nil)
)

// check reports the common preconditions, in the order every Store checks
// them: closed, context, name.
func (s *store) checkLocked(ctx context.Context, op, name string) error {
	if s.mu.closed {
		return fmt.Errorf("mem: %s %q: %w", op, name, backend.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem: %s %q: %w", op, name, err)
	}
	if err := backend.ValidName(name); err != nil {
		return fmt.Errorf("mem: %s: %w", op, err)
	}
	return nil
}

// ReadAt implements backend.Store.
func (s *store) ReadAt(ctx context.Context, name string, p []byte, off int64) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.checkLocked(ctx, "ReadAt", name); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("mem: ReadAt %q: negative offset %d: %w", name, off, blockdev.ErrOutOfRange)
	}
	o, ok := s.mu.objects[name]
	if !ok {
		return 0, fmt.Errorf("mem: ReadAt %q: %w", name, backend.ErrNotFound)
	}
	if off >= int64(len(o.data)) {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := copy(p, o.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Put implements backend.Store.
func (s *store) Put(ctx context.Context, name string, data []byte) error {
	// Copy before taking the lock: the copy may be large.
	buf := slices.Clone(data)
	if buf == nil {
		buf = []byte{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkLocked(ctx, "Put", name); err != nil {
		return err
	}
	var old int64
	if o, ok := s.mu.objects[name]; ok {
		old = int64(len(o.data))
	}
	if err := s.reserveLocked("Put", name, old, int64(len(buf))); err != nil {
		return err
	}
	s.mu.objects[name] = &object{data: buf, mod: time.Now()}
	return nil
}

// reserveLocked accounts for an object changing from oldSize to newSize
// bytes, or fails with ErrNoSpace having changed nothing.
func (s *store) reserveLocked(op, name string, oldSize, newSize int64) error {
	if newSize > s.opts.MaxObjectBytes {
		return fmt.Errorf("mem: %s %q: object of %d bytes exceeds %d: %w",
			op, name, newSize, s.opts.MaxObjectBytes, backend.ErrNoSpace)
	}
	used := s.mu.used - oldSize + newSize
	if s.opts.CapacityBytes > 0 && used > s.opts.CapacityBytes {
		return fmt.Errorf("mem: %s %q: %d bytes would exceed capacity %d: %w",
			op, name, used, s.opts.CapacityBytes, backend.ErrNoSpace)
	}
	s.mu.used = used
	return nil
}

// WriteAt implements backend.Overwriter.
func (s *store) WriteAt(ctx context.Context, name string, p []byte, off int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkLocked(ctx, "WriteAt", name); err != nil {
		return err
	}
	if off < 0 {
		return fmt.Errorf("mem: WriteAt %q: negative offset %d: %w", name, off, blockdev.ErrOutOfRange)
	}
	o, ok := s.mu.objects[name]
	if !ok {
		o = &object{data: []byte{}}
	}
	oldSize := int64(len(o.data))
	end := off + int64(len(p))
	if end < off { // overflow
		return fmt.Errorf("mem: WriteAt %q: offset %d overflows: %w", name, off, backend.ErrNoSpace)
	}
	newSize := max(oldSize, end)
	if len(p) == 0 {
		newSize = oldSize
	}
	if err := s.reserveLocked("WriteAt", name, oldSize, newSize); err != nil {
		return err
	}
	if newSize > int64(len(o.data)) {
		if newSize <= int64(cap(o.data)) {
			o.data = o.data[:newSize]
		} else {
			// Grow geometrically so that sequential appends stay linear.
			grown := make([]byte, newSize, max(newSize, min(2*int64(cap(o.data)), s.opts.MaxObjectBytes)))
			copy(grown, o.data)
			o.data = grown
		}
	}
	if len(p) > 0 {
		copy(o.data[off:], p)
	}
	o.mod = time.Now()
	s.mu.objects[name] = o
	return nil
}

// Delete implements backend.Store.
func (s *store) Delete(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkLocked(ctx, "Delete", name); err != nil {
		return err
	}
	if o, ok := s.mu.objects[name]; ok {
		s.mu.used -= int64(len(o.data))
		delete(s.mu.objects, name)
	}
	return nil
}

// List implements backend.Store. It snapshots the matching names and sizes
// under the lock and calls fn without it, so fn may use the store.
func (s *store) List(ctx context.Context, prefix string, fn func(backend.ObjectInfo) error) error {
	s.mu.RLock()
	if s.mu.closed {
		s.mu.RUnlock()
		return fmt.Errorf("mem: List %q: %w", prefix, backend.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		s.mu.RUnlock()
		return fmt.Errorf("mem: List %q: %w", prefix, err)
	}
	var infos []backend.ObjectInfo
	for name, o := range s.mu.objects {
		if strings.HasPrefix(name, prefix) {
			infos = append(infos, backend.ObjectInfo{Name: name, Size: int64(len(o.data)), ModTime: o.mod})
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(infos, func(a, b backend.ObjectInfo) int { return strings.Compare(a.Name, b.Name) })
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("mem: List %q: %w", prefix, err)
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Stat implements backend.Store.
func (s *store) Stat(ctx context.Context, name string) (backend.ObjectInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.checkLocked(ctx, "Stat", name); err != nil {
		return backend.ObjectInfo{}, err
	}
	o, ok := s.mu.objects[name]
	if !ok {
		return backend.ObjectInfo{}, fmt.Errorf("mem: Stat %q: %w", name, backend.ErrNotFound)
	}
	return backend.ObjectInfo{Name: name, Size: int64(len(o.data)), ModTime: o.mod}, nil
}

// Close implements backend.Store.
func (s *store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return fmt.Errorf("mem: Close: %w", backend.ErrClosed)
	}
	s.mu.closed = true
	s.mu.objects = nil
	s.mu.used = 0
	return nil
}

// Clone implements Store.
func (s *store) Clone() (Store, error) {
	c, err := s.clone()
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (s *store) clone() (*store, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.mu.closed {
		return nil, fmt.Errorf("mem: Clone: %w", backend.ErrClosed)
	}
	c := &store{opts: s.opts}
	c.mu.objects = make(map[string]*object, len(s.mu.objects))
	for name, o := range s.mu.objects {
		c.mu.objects[name] = &object{data: slices.Clone(o.data), mod: o.mod}
	}
	c.mu.used = s.mu.used
	return c, nil
}

// Usage implements Store.
func (s *store) Usage() (int, int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.mu.closed {
		return 0, 0, fmt.Errorf("mem: Usage: %w", backend.ErrClosed)
	}
	return len(s.mu.objects), s.mu.used, nil
}

// putOnly is a store without the Overwriter capability. It forwards
// explicitly rather than embedding, so that WriteAt is not promoted.
type putOnly struct{ s *store }

func (p *putOnly) ReadAt(ctx context.Context, name string, b []byte, off int64) (int, error) {
	return p.s.ReadAt(ctx, name, b, off)
}
func (p *putOnly) Put(ctx context.Context, name string, data []byte) error {
	return p.s.Put(ctx, name, data)
}
func (p *putOnly) Delete(ctx context.Context, name string) error { return p.s.Delete(ctx, name) }
func (p *putOnly) List(ctx context.Context, prefix string, fn func(backend.ObjectInfo) error) error {
	return p.s.List(ctx, prefix, fn)
}
func (p *putOnly) Stat(ctx context.Context, name string) (backend.ObjectInfo, error) {
	return p.s.Stat(ctx, name)
}
func (p *putOnly) Close() error               { return p.s.Close() }
func (p *putOnly) Usage() (int, int64, error) { return p.s.Usage() }
func (p *putOnly) Clone() (Store, error) {
	c, err := p.s.clone()
	if err != nil {
		return nil, err
	}
	return &putOnly{s: c}, nil
}
