package dir

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/blockdev"
)

const (
	dirSuffix  = "@"     // appended to directory elements
	tmpPrefix  = "~tmp-" // temporary files of Put
	lockName   = "~lock" // flock(2)ed while open
	ownMarker  = "~"     // any name containing it belongs to the store
	defaultDir = 0o755
	defaultReg = 0o644
)

// Options configure a Store. The zero value (or nil) means defaults.
type Options struct {
	// NoSync skips fsync and fdatasync. Objects are then NOT durable when
	// Put or WriteAt returns: only for tests that do not crash.
	NoSync bool
	// FilePerm and DirPerm are the permission bits of new files and
	// directories; zero means 0644 and 0755.
	FilePerm, DirPerm fs.FileMode
}

// Validate reports whether the options are usable.
func (o *Options) Validate() error {
	if o.FilePerm&^fs.ModePerm != 0 || o.DirPerm&^fs.ModePerm != 0 {
		return fmt.Errorf("dir: permissions %v, %v: only permission bits allowed", o.FilePerm, o.DirPerm)
	}
	return nil
}

// Store is a backend.Store and backend.Overwriter in a local directory.
// All methods may be called concurrently. One directory is used by one
// Store at a time: Open refuses a directory another Store holds open.
type Store struct {
	root string
	opts Options
	lock *os.File
	seq  atomic.Uint64

	// durable holds directories (absolute paths) known to have a durable
	// entry in their parent.
	durable sync.Map

	handles handles // read-only handles of objects

	// active counts calls in progress and closed is set by Close; both
	// are atomics so that a call costs no lock (reads are the hot path of
	// every volume). Close waits on mu.idle, signalled under mu by the
	// call that brings active to 0 after closed was set.
	active atomic.Int64
	closed atomic.Bool
	mu     struct {
		sync.Mutex
		idle *sync.Cond
	}
}

var (
	_ backend.Store      = (*Store)(nil)
	_ backend.Overwriter = (*Store)(nil)
)

// Open opens the store in directory root, creating it if needed, and
// removes temporary files a crash left behind. The directory is locked
// until Close; a second Open of it fails with blockdev.ErrInUse.
func Open(ctx context.Context, root string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.FilePerm == 0 {
		o.FilePerm = defaultReg
	}
	if o.DirPerm == 0 {
		o.DirPerm = defaultDir
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("dir: Open %s: %w", root, err)
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("dir: Open: %w", err)
	}
	s := &Store{root: root, opts: o}
	s.handles.seed = maphash.MakeSeed()
	s.mu.idle = sync.NewCond(&s.mu.Mutex)
	if err := s.mkdir(root, true); err != nil {
		return nil, fmt.Errorf("dir: Open: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(root, lockName), os.O_RDWR|os.O_CREATE, o.FilePerm)
	if err != nil {
		return nil, fmt.Errorf("dir: Open: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("dir: Open %s: locked by another store: %w", root, blockdev.ErrInUse)
		}
		return nil, fmt.Errorf("dir: Open %s: flock: %w", root, err)
	}
	s.lock = lock
	if err := s.removeTemps(ctx); err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("dir: Open %s: removing temporary files: %w", root, err)
	}
	return s, nil
}

// removeTemps deletes the temporary files of Puts that never completed.
func (s *Store) removeTemps(ctx context.Context) error {
	return filepath.WalkDir(s.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.Type().IsRegular() && strings.HasPrefix(d.Name(), tmpPrefix) {
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		return nil
	})
}

// Root returns the store's directory.
func (s *Store) Root() string { return s.root }

// enter admits a call, or fails with ErrClosed; exit must follow.
func (s *Store) enter(op, name string) error {
	s.active.Add(1)
	if s.closed.Load() {
		s.exit()
		return fmt.Errorf("dir: %s %q: %w", op, name, backend.ErrClosed)
	}
	return nil
}

func (s *Store) exit() {
	if s.active.Add(-1) == 0 && s.closed.Load() {
		s.mu.Lock()
		s.mu.idle.Broadcast()
		s.mu.Unlock()
	}
}

// begin is enter plus the context and name checks every object call makes.
func (s *Store) begin(ctx context.Context, op, name string) error {
	if err := s.enter(op, name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		s.exit()
		return fmt.Errorf("dir: %s %q: %w", op, name, err)
	}
	if err := backend.ValidName(name); err != nil {
		s.exit()
		return fmt.Errorf("dir: %s: %w", op, err)
	}
	return nil
}

// objectPath maps a valid object name to its file, relative to the root:
//
//	"a/b/c" → "a@/b@/c"
func objectPath(name string) string {
	elems := strings.Split(name, "/")
	for i := range elems[:len(elems)-1] {
		elems[i] += dirSuffix
	}
	return strings.Join(elems, "/")
}

// objectName is objectPath's inverse: it maps a path relative to the root
// back to an object name, or reports that no object lives there.
func objectName(rel string) (string, bool) {
	elems := strings.Split(rel, "/")
	for i, e := range elems {
		if i < len(elems)-1 {
			var ok bool
			if e, ok = strings.CutSuffix(e, dirSuffix); !ok {
				return "", false
			}
			elems[i] = e
		}
		if !validElem(e) {
			return "", false
		}
	}
	name := strings.Join(elems, "/")
	if backend.ValidName(name) != nil {
		return "", false
	}
	return name, true
}

// paths maps an object name to its directory and file:
//
//	"a/b/c" → <root>/a@/b@, <root>/a@/b@/c
func (s *Store) paths(name string) (dir, file string) {
	file = filepath.Join(s.root, filepath.FromSlash(objectPath(name)))
	return filepath.Dir(file), file
}

// mapErr wraps err with the store's sentinel for it.
func mapErr(op, name string, err error) error {
	var sentinel error
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.ELOOP):
		// ENOTDIR and ELOOP: something that is not the store's sits
		// where a directory or an object would be; no object is there.
		sentinel = backend.ErrNotFound
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), errors.Is(err, syscall.EFBIG):
		sentinel = backend.ErrNoSpace
	default:
		return fmt.Errorf("dir: %s %q: %w", op, name, err)
	}
	return fmt.Errorf("dir: %s %q: %w: %w", op, name, sentinel, err)
}

// mkdir creates directory path if needed and makes its entry durable. With
// all set it creates missing parents too (Open's root).
func (s *Store) mkdir(path string, all bool) error {
	if _, ok := s.durable.Load(path); ok {
		return nil
	}
	var err error
	if all {
		if _, serr := os.Stat(path); serr != nil {
			if parent := filepath.Dir(path); parent != path {
				if err := s.mkdir(parent, true); err != nil {
					return err
				}
			}
		}
	}
	err = os.Mkdir(path, s.opts.DirPerm)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	// Whether we created it or found it (perhaps created by a concurrent
	// call that has not synced yet), sync the parent once.
	if err := s.syncDir(filepath.Dir(path)); err != nil {
		return err
	}
	s.durable.Store(path, struct{}{})
	return nil
}

// mkdirs creates the directories of object name.
func (s *Store) mkdirs(name string) error {
	dir := s.root
	elems := strings.Split(name, "/")
	for _, e := range elems[:len(elems)-1] {
		dir = filepath.Join(dir, e+dirSuffix)
		if err := s.mkdir(dir, false); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) syncDir(path string) error {
	if s.opts.NoSync {
		return nil
	}
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *Store) syncData(f *os.File) error {
	if s.opts.NoSync {
		return nil
	}
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			if err != nil {
				return &fs.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}

// ReadAt implements backend.Store.
func (s *Store) ReadAt(ctx context.Context, name string, p []byte, off int64) (int, error) {
	// The hot path of every volume read: a cached handle, whose reference
	// keeps its file open, needs no count in active (whose cache line
	// every core would take on every read). A read that acquired it before
	// Close took the handles away completes, ordered before the Close; one
	// that sees closed after acquiring it fails as any later call does.
	// (No defer here: this function's defers are not open-coded, and a
	// deferred call costs more than the rest of the hit.)
	if h := s.handles.lookup(name); h != nil {
		var n int
		var err error
		if s.closed.Load() {
			err = fmt.Errorf("dir: ReadAt %q: %w", name, backend.ErrClosed)
		} else {
			n, err = s.readHandle(ctx, h, name, p, off)
		}
		s.handles.release(h)
		return n, err
	}
	if err := s.enter("ReadAt", name); err != nil {
		return 0, err
	}
	defer s.exit()
	// The name is checked only when a handle is opened: a cached handle's
	// name was checked then (this is the hot path of every volume read).
	var nameErr error
	h, err := s.handles.get(name, func() (*os.File, error) {
		if nameErr = backend.ValidName(name); nameErr != nil {
			return nil, nameErr
		}
		_, file := s.paths(name)
		return os.OpenFile(file, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	})
	if nameErr != nil {
		return 0, fmt.Errorf("dir: ReadAt: %w", nameErr)
	}
	if err != nil {
		return 0, mapErr("ReadAt", name, err)
	}
	defer s.handles.release(h)
	return s.readHandle(ctx, h, name, p, off)
}

// readHandle is ReadAt through a handle of name.
func (s *Store) readHandle(ctx context.Context, h *handle, name string, p []byte, off int64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("dir: ReadAt %q: %w", name, err)
	}
	if off < 0 {
		return 0, fmt.Errorf("dir: ReadAt %q: negative offset %d: %w", name, off, blockdev.ErrOutOfRange)
	}
	n, err := h.f.ReadAt(p, off)
	switch {
	case err == io.EOF:
		return n, io.EOF
	case err != nil:
		return n, mapErr("ReadAt", name, err)
	}
	return n, nil
}

// Put implements backend.Store.
func (s *Store) Put(ctx context.Context, name string, data []byte) error {
	if err := s.begin(ctx, "Put", name); err != nil {
		return err
	}
	defer s.exit()
	if err := s.put(ctx, name, data); err != nil {
		return mapErr("Put", name, err)
	}
	return nil
}

func (s *Store) put(ctx context.Context, name string, data []byte) error {
	if err := s.mkdirs(name); err != nil {
		return err
	}
	dir, file := s.paths(name)
	tmp := filepath.Join(dir, tmpPrefix+filepath.Base(file)+"-"+
		strconv.FormatUint(s.seq.Add(1), 36)+"-"+strconv.FormatUint(rand.Uint64(), 36))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, s.opts.FilePerm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = s.syncData(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// Last chance to honour the context with nothing done.
		err = ctx.Err()
	}
	if err == nil {
		err = os.Rename(tmp, file)
		if err == nil {
			s.handles.drop(name) // it reads the replaced file
		}
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return s.syncDir(dir)
}

// WriteAt implements backend.Overwriter.
func (s *Store) WriteAt(ctx context.Context, name string, p []byte, off int64) error {
	if err := s.begin(ctx, "WriteAt", name); err != nil {
		return err
	}
	defer s.exit()
	if off < 0 {
		return fmt.Errorf("dir: WriteAt %q: negative offset %d: %w", name, off, blockdev.ErrOutOfRange)
	}
	if err := s.writeAt(name, p, off); err != nil {
		return mapErr("WriteAt", name, err)
	}
	return nil
}

func (s *Store) writeAt(name string, p []byte, off int64) error {
	if err := s.mkdirs(name); err != nil {
		return err
	}
	dir, file := s.paths(name)
	created := true
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE|os.O_EXCL, s.opts.FilePerm)
	if errors.Is(err, fs.ErrExist) {
		created = false
		f, err = os.OpenFile(file, os.O_RDWR|syscall.O_NOFOLLOW, 0)
	}
	if err != nil {
		return err
	}
	if len(p) > 0 {
		_, err = f.WriteAt(p, off)
	}
	if err == nil {
		err = s.syncData(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && created {
		err = s.syncDir(dir)
	}
	return err
}

// Delete implements backend.Store.
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := s.begin(ctx, "Delete", name); err != nil {
		return err
	}
	defer s.exit()
	dir, file := s.paths(name)
	err := os.Remove(file)
	s.handles.drop(name)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return nil
	case err != nil:
		return mapErr("Delete", name, err)
	}
	if err := s.syncDir(dir); err != nil {
		return mapErr("Delete", name, err)
	}
	return nil
}

// Stat implements backend.Store.
func (s *Store) Stat(ctx context.Context, name string) (backend.ObjectInfo, error) {
	if err := s.begin(ctx, "Stat", name); err != nil {
		return backend.ObjectInfo{}, err
	}
	defer s.exit()
	_, file := s.paths(name)
	fi, err := os.Lstat(file)
	if err != nil {
		return backend.ObjectInfo{}, mapErr("Stat", name, err)
	}
	if !fi.Mode().IsRegular() {
		return backend.ObjectInfo{}, fmt.Errorf("dir: Stat %q: not a regular file: %w", name, backend.ErrNotFound)
	}
	return backend.ObjectInfo{Name: name, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// List implements backend.Store. It reads one directory at a time and
// calls fn without holding any lock, so fn may use the store (but must not
// Close it).
func (s *Store) List(ctx context.Context, prefix string, fn func(backend.ObjectInfo) error) error {
	if err := s.enter("List", prefix); err != nil {
		return err
	}
	defer s.exit()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dir: List %q: %w", prefix, err)
	}
	// Start in the deepest directory the prefix names: "a/b/c" → a@/b@,
	// where names start with "a/b/" and are filtered by "c".
	dir, namePrefix := s.root, ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		namePrefix = prefix[:i+1]
		for _, e := range strings.Split(prefix[:i], "/") {
			if !validElem(e) {
				return nil // no object name has this prefix
			}
			dir = filepath.Join(dir, e+dirSuffix)
		}
	}
	return s.walk(ctx, dir, namePrefix, prefix, fn)
}

// validElem reports whether e can be one element of an object name.
func validElem(e string) bool {
	return !strings.Contains(e, "/") && backend.ValidName(e) == nil
}

type dirent struct {
	key   string // element, plus '/' for directories: the sort key
	entry fs.DirEntry
}

// walk lists directory dir, whose objects are named namePrefix+element, in
// lexical order of the full names. A directory sorts as its element plus
// '/', which is where every name below it falls among its siblings.
func (s *Store) walk(ctx context.Context, dir, namePrefix, prefix string, fn func(backend.ObjectInfo) error) error {
	f, err := os.Open(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return mapErr("List", prefix, err)
	}
	entries, err := f.ReadDir(-1)
	_ = f.Close()
	if err != nil {
		return mapErr("List", prefix, err)
	}
	ents := make([]dirent, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		if strings.Contains(name, ownMarker) {
			continue
		}
		switch {
		case e.IsDir():
			elem, ok := strings.CutSuffix(name, dirSuffix)
			if ok && validElem(elem) {
				ents = append(ents, dirent{key: elem + "/", entry: e})
			}
		case e.Type().IsRegular():
			if validElem(name) {
				ents = append(ents, dirent{key: name, entry: e})
			}
		}
	}
	slices.SortFunc(ents, func(a, b dirent) int { return strings.Compare(a.key, b.key) })
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("dir: List %q: %w", prefix, err)
		}
		full := namePrefix + e.key
		if e.entry.IsDir() {
			if strings.HasPrefix(full, prefix) || strings.HasPrefix(prefix, full) {
				if err := s.walk(ctx, filepath.Join(dir, e.entry.Name()), full, prefix, fn); err != nil {
					return err
				}
			}
			continue
		}
		if !strings.HasPrefix(full, prefix) || backend.ValidName(full) != nil {
			continue
		}
		fi, err := e.entry.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted since ReadDir
		}
		if err != nil {
			return mapErr("List", prefix, err)
		}
		if err := fn(backend.ObjectInfo{Name: full, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}

// Close implements backend.Store. It waits for calls in progress, then
// releases the directory's lock.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return fmt.Errorf("dir: Close: %w", backend.ErrClosed)
	}
	// A call that entered before the Swap is counted in active; one that
	// enters after it sees closed and leaves. The last to leave signals
	// under mu, so the signal cannot fall between the check and the Wait.
	s.mu.Lock()
	for s.active.Load() > 0 {
		s.mu.idle.Wait()
	}
	s.mu.Unlock()
	s.handles.closeAll()
	// Closing the descriptor releases the flock.
	if err := s.lock.Close(); err != nil {
		return fmt.Errorf("dir: Close: %w", err)
	}
	return nil
}
