//go:build ceph

package rados

/*
#cgo LDFLAGS: -lrados
#include <errno.h>
#include <stdlib.h>
#include <rados/librados.h>

// lw_write runs one write operation on oid: create it (idempotent), then
// either replace its data (full != 0) or write at off, in steps of at most
// step bytes. RADOS applies the operation atomically. librados copies buf
// into the operation, so buf is not used after the call.
static int lw_write(rados_ioctx_t io, const char *oid, const char *buf, size_t len,
                    uint64_t off, int full, size_t step) {
	rados_write_op_t op = rados_create_write_op();
	if (op == NULL) {
		return -ENOMEM;
	}
	rados_write_op_create(op, LIBRADOS_CREATE_IDEMPOTENT, NULL);
	size_t done = 0;
	if (full) {
		size_t n = len < step ? len : step;
		rados_write_op_write_full(op, buf, n);
		done = n;
	}
	while (done < len) {
		size_t n = len - done < step ? len - done : step;
		rados_write_op_write(op, buf + done, n, off + done);
		done += n;
	}
	int r = rados_write_op_operate2(op, io, oid, NULL, 0);
	rados_release_write_op(op);
	return r;
}
*/
import "C"

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	gorados "github.com/ceph/go-ceph/rados"

	"github.com/lunway/lunway/backend"
)

// Store is a backend.Store and backend.Overwriter on one RADOS pool and
// namespace. All methods may be called concurrently.
type Store struct {
	opts Options // with defaults
	conn *Conn
	io   *gorados.IOContext
	sem  chan struct{}

	mu struct {
		sync.Mutex
		closed bool
	}
	// inflight counts calls between enter and their release; Close waits
	// for it after setting closed, so no call touches io after Destroy.
	inflight sync.WaitGroup
}

var (
	_ backend.Store      = (*Store)(nil)
	_ backend.Overwriter = (*Store)(nil)
)

// Open connects to the cluster and opens the store on opts.Pool and
// opts.Namespace. The Store owns the connection: Close shuts it down.
// Errors are those of Connect, or ErrConfig naming a missing pool.
func Open(ctx context.Context, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	conn, err := Connect(ctx, &o.ConnOptions)
	if err != nil {
		return nil, err
	}
	ioctx, err := conn.OpenIOContext(o.Pool, o.Namespace)
	if err != nil {
		conn.Close()
		return nil, err
	}
	s := &Store{opts: o, conn: conn, io: ioctx, sem: make(chan struct{}, o.MaxConcurrency)}
	o.Logger.Debug("rados store open", "pool", o.Pool, "namespace", o.Namespace)
	return s, nil
}

// enter admits a call: it fails once the store is closed or ctx is done,
// and waits for a semaphore slot. The release function must be called.
func (s *Store) enter(ctx context.Context) (func(), error) {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return nil, backend.ErrClosed
	}
	s.inflight.Add(1)
	s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		s.inflight.Done()
		return nil, err
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		s.inflight.Done()
		return nil, ctx.Err()
	}
	return func() {
		<-s.sem
		s.inflight.Done()
	}, nil
}

func checkOffset(op, name string, off int64) error {
	if off < 0 {
		return fmt.Errorf("rados %s %s: negative offset %d", op, name, off)
	}
	return nil
}

// ReadAt implements backend.Store. A read of at most MaxWriteStep bytes is
// one RADOS read, atomic with respect to Put and WriteAt; longer reads are
// split.
func (s *Store) ReadAt(ctx context.Context, name string, p []byte, off int64) (int, error) {
	if err := backend.ValidName(name); err != nil {
		return 0, err
	}
	if err := checkOffset("read", name, off); err != nil {
		return 0, err
	}
	release, err := s.enter(ctx)
	if err != nil {
		return 0, err
	}
	defer release()
	if len(p) == 0 {
		if _, err := s.io.Stat(name); err != nil {
			return 0, wrap("read", name, err)
		}
		return 0, nil
	}
	n := 0
	for n < len(p) {
		step := min(len(p)-n, MaxWriteStep)
		got, err := s.io.Read(name, p[n:n+step], uint64(off)+uint64(n))
		if err != nil {
			return n, wrap("read", name, err)
		}
		n += got
		if got < step {
			return n, io.EOF
		}
	}
	return n, nil
}

// write runs lw_write.
func (s *Store) write(ctx context.Context, op, name string, data []byte, off int64, full bool) error {
	if err := backend.ValidName(name); err != nil {
		return err
	}
	if err := checkOffset(op, name, off); err != nil {
		return err
	}
	if off+int64(len(data)) > s.opts.MaxObjectBytes {
		return fmt.Errorf("%w: %s %s: end %d beyond %d bytes", ErrTooLarge, op, name, off+int64(len(data)), s.opts.MaxObjectBytes)
	}
	release, err := s.enter(ctx)
	if err != nil {
		return err
	}
	defer release()
	coid := C.CString(name)
	defer C.free(unsafe.Pointer(coid))
	var buf *C.char
	if len(data) > 0 {
		buf = (*C.char)(unsafe.Pointer(&data[0]))
	}
	fullFlag := C.int(0)
	if full {
		fullFlag = 1
	}
	ret := C.lw_write(C.rados_ioctx_t(s.io.Pointer()), coid, buf, C.size_t(len(data)),
		C.uint64_t(off), fullFlag, C.size_t(MaxWriteStep))
	if ret < 0 {
		return &Error{Op: op, Name: name, Errno: errnoOf(int(ret))}
	}
	return nil
}

// Put implements backend.Store: one atomic RADOS operation.
func (s *Store) Put(ctx context.Context, name string, data []byte) error {
	return s.write(ctx, "put", name, data, 0, true)
}

// WriteAt implements backend.Overwriter: one atomic RADOS operation,
// durable when it returns.
func (s *Store) WriteAt(ctx context.Context, name string, p []byte, off int64) error {
	return s.write(ctx, "write", name, p, off, false)
}

// Delete implements backend.Store.
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := backend.ValidName(name); err != nil {
		return err
	}
	release, err := s.enter(ctx)
	if err != nil {
		return err
	}
	defer release()
	if err := s.io.Delete(name); err != nil && Errno(err) != syscall.ENOENT {
		return wrap("delete", name, err)
	}
	return nil
}

// Stat implements backend.Store.
func (s *Store) Stat(ctx context.Context, name string) (backend.ObjectInfo, error) {
	if err := backend.ValidName(name); err != nil {
		return backend.ObjectInfo{}, err
	}
	release, err := s.enter(ctx)
	if err != nil {
		return backend.ObjectInfo{}, err
	}
	defer release()
	st, err := s.io.Stat(name)
	if err != nil {
		return backend.ObjectInfo{}, wrap("stat", name, err)
	}
	return backend.ObjectInfo{Name: name, Size: int64(st.Size), ModTime: st.ModTime}, nil
}

// listBatch is how many objects List stats at once.
const listBatch = 32

// List implements backend.Store; see the package documentation for its
// cost and memory bound.
func (s *Store) List(ctx context.Context, prefix string, fn func(backend.ObjectInfo) error) error {
	names, err := s.names(ctx, prefix)
	if err != nil {
		return err
	}
	infos := make([]backend.ObjectInfo, listBatch)
	errs := make([]error, listBatch)
	for len(names) > 0 {
		batch := names[:min(len(names), listBatch)]
		names = names[len(batch):]
		var wg sync.WaitGroup
		for i, name := range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				infos[i], errs[i] = s.Stat(ctx, name)
			}()
		}
		wg.Wait()
		for i := range batch {
			if err := ctx.Err(); err != nil {
				return err
			}
			if errs[i] != nil {
				if Errno(errs[i]) == syscall.ENOENT {
					continue // deleted since the listing
				}
				return errs[i]
			}
			if err := fn(infos[i]); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

// names returns the sorted names of the namespace's objects that start
// with prefix and are valid backend names.
func (s *Store) names(ctx context.Context, prefix string) ([]string, error) {
	release, err := s.enter(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	it, err := s.io.Iter()
	if err != nil {
		return nil, wrap("list", prefix, err)
	}
	defer it.Close()
	var names []string
	for i := 0; it.Next(); i++ {
		if i%1024 == 1023 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		name := it.Value()
		if !strings.HasPrefix(name, prefix) || backend.ValidName(name) != nil {
			continue
		}
		if len(names) >= s.opts.MaxListNames {
			return nil, fmt.Errorf("%w: list %q: more than %d objects (Options.MaxListNames)", ErrTooMany, prefix, s.opts.MaxListNames)
		}
		names = append(names, name)
	}
	if err := it.Err(); err != nil {
		return nil, wrap("list", prefix, err)
	}
	slices.SortFunc(names, cmp.Compare[string])
	return names, nil
}

// Close implements backend.Store: it waits for the calls in flight, then
// closes the pool and the connection.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return backend.ErrClosed
	}
	s.mu.closed = true
	s.mu.Unlock()
	s.inflight.Wait()
	s.io.Destroy()
	return s.conn.Close()
}
