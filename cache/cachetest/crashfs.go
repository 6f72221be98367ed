// Package cachetest has test helpers for package cache: CrashFS, an
// in-memory cache.FS that remembers what was made durable, so that a test
// can take the state a crash would leave behind at any moment.
package cachetest

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/cache"
)

// Mode says what a crash does to data written but not synced.
type Mode uint8

const (
	// ProcessCrash: the process dies, the kernel survives (kill -9):
	// everything written is kept, synced or not.
	ProcessCrash Mode = iota
	// PowerLoss: only what was synced survives (file data by File.Sync,
	// directory entries by SyncDir).
	PowerLoss
	// TornPowerLoss: like PowerLoss, but each write since the file's last
	// sync survives or not, independently (a random subset, as writeback
	// would leave), chosen by the seed.
	TornPowerLoss
)

// CrashFS is an in-memory cache.FS. All methods may be called
// concurrently; Crash may be called while files are in use.
type CrashFS struct {
	mu    sync.Mutex
	files map[string]*memFile // current directory entries
	// durable is the directory state as of the last SyncDir of each
	// directory: entry name -> file.
	durable map[string]*memFile
	dirs    map[string]bool
	locks   map[string]bool
	// FailSync, when set, makes File.Sync fail with it (a dying disk).
	failSync error
}

type memFile struct {
	mu      sync.Mutex
	data    []byte
	synced  []byte
	pending []write // writes and truncates since the last Sync
}

type write struct {
	off      int64
	data     []byte
	truncate bool
}

var _ cache.FS = (*CrashFS)(nil)

// NewCrashFS returns an empty file system.
func NewCrashFS() *CrashFS {
	return &CrashFS{files: map[string]*memFile{}, durable: map[string]*memFile{},
		dirs: map[string]bool{".": true, "/": true}, locks: map[string]bool{}}
}

// SetFailSync makes every later File.Sync fail with err (nil: succeed).
func (c *CrashFS) SetFailSync(err error) {
	c.mu.Lock()
	c.failSync = err
	c.mu.Unlock()
}

// Crash returns a new CrashFS holding what a crash now would leave behind
// (mode, with seed for TornPowerLoss). Locks are not kept. The receiver
// is not changed.
func (c *CrashFS) Crash(mode Mode, seed uint64) *CrashFS {
	c.mu.Lock()
	defer c.mu.Unlock()
	rng := rand.New(rand.NewPCG(seed, 0x637261736866))
	out := NewCrashFS()
	for d := range c.dirs {
		out.dirs[d] = true
	}
	entries := c.files
	if mode != ProcessCrash {
		entries = c.durable
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	slices.Sort(names) // determinism for TornPowerLoss
	for _, n := range names {
		f := entries[n]
		f.mu.Lock()
		var data []byte
		switch mode {
		case ProcessCrash:
			data = slices.Clone(f.data)
		case PowerLoss:
			data = slices.Clone(f.synced)
		case TornPowerLoss:
			data = slices.Clone(f.synced)
			for _, w := range f.pending {
				if rng.IntN(2) == 0 {
					continue
				}
				data = apply(data, w)
			}
		}
		f.mu.Unlock()
		nf := &memFile{data: data, synced: slices.Clone(data)}
		out.files[n] = nf
		out.durable[n] = nf
	}
	return out
}

func apply(data []byte, w write) []byte {
	if w.truncate {
		if w.off <= int64(len(data)) {
			return data[:w.off]
		}
		return append(data, make([]byte, w.off-int64(len(data)))...)
	}
	if end := w.off + int64(len(w.data)); end > int64(len(data)) {
		data = append(data, make([]byte, end-int64(len(data)))...)
	}
	copy(data[w.off:], w.data)
	return data
}

func clean(name string) string { return path.Clean(name) }

func notExist(op, name string) error {
	return &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
}

// MkdirAll implements cache.FS.
func (c *CrashFS) MkdirAll(dir string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for d := clean(dir); ; d = path.Dir(d) {
		c.dirs[d] = true
		if d == "." || d == "/" {
			return nil
		}
	}
}

func (c *CrashFS) checkDirLocked(name string) error {
	if !c.dirs[path.Dir(name)] {
		return notExist("open", name)
	}
	return nil
}

// Create implements cache.FS.
func (c *CrashFS) Create(name string) (cache.File, error) {
	name = clean(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkDirLocked(name); err != nil {
		return nil, err
	}
	if _, ok := c.files[name]; ok {
		return nil, &fs.PathError{Op: "create", Path: name, Err: fs.ErrExist}
	}
	f := &memFile{}
	c.files[name] = f
	return &handle{fs: c, f: f}, nil
}

// Open implements cache.FS.
func (c *CrashFS) Open(name string) (cache.File, error) {
	name = clean(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.files[name]
	if !ok {
		return nil, notExist("open", name)
	}
	return &handle{fs: c, f: f}, nil
}

// Remove implements cache.FS.
func (c *CrashFS) Remove(name string) error {
	name = clean(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.files[name]; !ok {
		return notExist("remove", name)
	}
	delete(c.files, name)
	return nil
}

// ReadDir implements cache.FS.
func (c *CrashFS) ReadDir(dir string) ([]string, error) {
	dir = clean(dir)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.dirs[dir] {
		return nil, notExist("readdir", dir)
	}
	var names []string
	for n := range c.files {
		if path.Dir(n) == dir {
			names = append(names, path.Base(n))
		}
	}
	for d := range c.dirs {
		if d != dir && path.Dir(d) == dir {
			names = append(names, path.Base(d))
		}
	}
	slices.Sort(names)
	return names, nil
}

// SyncDir implements cache.FS: the directory's current entries become
// durable.
func (c *CrashFS) SyncDir(dir string) error {
	dir = clean(dir)
	c.mu.Lock()
	defer c.mu.Unlock()
	for n := range c.durable {
		if path.Dir(n) == dir {
			if _, ok := c.files[n]; !ok {
				delete(c.durable, n)
			}
		}
	}
	for n, f := range c.files {
		if path.Dir(n) == dir {
			c.durable[n] = f
		}
	}
	return nil
}

// Lock implements cache.FS.
func (c *CrashFS) Lock(name string) (io.Closer, error) {
	name = clean(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.locks[name] {
		return nil, fmt.Errorf("cachetest: %s is locked: %w", name, blockdev.ErrInUse)
	}
	c.locks[name] = true
	if _, ok := c.files[name]; !ok {
		c.files[name] = &memFile{}
	}
	return lockHandle{c, name}, nil
}

type lockHandle struct {
	c    *CrashFS
	name string
}

func (l lockHandle) Close() error {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	delete(l.c.locks, l.name)
	return nil
}

// Files lists the current files with their sizes (for test messages).
func (c *CrashFS) Files() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	names := make([]string, 0, len(c.files))
	for n := range c.files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		f := c.files[n]
		f.mu.Lock()
		fmt.Fprintf(&b, "%s %d (synced %d)\n", n, len(f.data), len(f.synced))
		f.mu.Unlock()
	}
	return b.String()
}

type handle struct {
	fs     *CrashFS
	f      *memFile
	mu     sync.Mutex
	closed bool
}

var errClosed = errors.New("cachetest: file closed")

func (h *handle) check() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return errClosed
	}
	return nil
}

func (h *handle) ReadAt(p []byte, off int64) (int, error) {
	if err := h.check(); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, errors.New("cachetest: negative offset")
	}
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	if off >= int64(len(h.f.data)) {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := copy(p, h.f.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (h *handle) WriteAt(p []byte, off int64) (int, error) {
	if err := h.check(); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, errors.New("cachetest: negative offset")
	}
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	w := write{off: off, data: slices.Clone(p)}
	h.f.data = apply(h.f.data, w)
	h.f.pending = append(h.f.pending, w)
	return len(p), nil
}

func (h *handle) Truncate(size int64) error {
	if err := h.check(); err != nil {
		return err
	}
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	w := write{off: size, truncate: true}
	h.f.data = apply(h.f.data, w)
	h.f.pending = append(h.f.pending, w)
	return nil
}

func (h *handle) Sync() error {
	if err := h.check(); err != nil {
		return err
	}
	h.fs.mu.Lock()
	fail := h.fs.failSync
	h.fs.mu.Unlock()
	if fail != nil {
		return fail
	}
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	h.f.synced = slices.Clone(h.f.data)
	h.f.pending = nil
	return nil
}

func (h *handle) Size() (int64, error) {
	if err := h.check(); err != nil {
		return 0, err
	}
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	return int64(len(h.f.data)), nil
}

func (h *handle) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return errClosed
	}
	h.closed = true
	return nil
}
