package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/lunway/lunway/blockdev"
)

// Defaults for regular files (block devices report their own).
const (
	DefaultLogicalBlockSize  = 512
	DefaultPhysicalBlockSize = 4096
)

// Options configure Open. The zero value (or nil) opens an existing file
// or block device read-write with default geometry.
type Options struct {
	// Create makes a sparse regular file of SizeBytes when path does not
	// exist. An existing file is opened as it is, whatever its size.
	Create bool
	// SizeBytes is the size of a file Create makes: positive, a multiple
	// of the logical block size.
	SizeBytes int64
	// ReadOnly opens read-only; writes fail with blockdev.ErrReadOnly.
	ReadOnly bool
	// Direct opens with O_DIRECT, bypassing the page cache.
	Direct bool
	// LogicalBlockSize is 512 or 4096; zero means 512 for files and the
	// device's own for block devices (where it may only be raised to a
	// multiple of the device's).
	LogicalBlockSize int
	// PhysicalBlockSize is a power-of-two multiple of the logical block
	// size; zero means 4096 for files and the device's own for block
	// devices.
	PhysicalBlockSize int
}

// Validate reports whether the options are usable.
func (o *Options) Validate() error {
	if o.LogicalBlockSize != 0 && o.LogicalBlockSize != 512 && o.LogicalBlockSize != 4096 {
		return fmt.Errorf("file: LogicalBlockSize %d: must be 512 or 4096", o.LogicalBlockSize)
	}
	if p := o.PhysicalBlockSize; p != 0 {
		l := max(o.LogicalBlockSize, 512)
		if p < l || p%l != 0 || (p/l)&(p/l-1) != 0 || p > 1<<20 {
			return fmt.Errorf("file: PhysicalBlockSize %d: must be a power-of-two multiple of %d, at most 1 MiB", p, l)
		}
	}
	if o.SizeBytes < 0 {
		return fmt.Errorf("file: SizeBytes %d is negative", o.SizeBytes)
	}
	if o.Create {
		if o.ReadOnly {
			return errors.New("file: Create and ReadOnly together")
		}
		if o.SizeBytes == 0 || o.SizeBytes%int64(max(o.LogicalBlockSize, 512)) != 0 {
			return fmt.Errorf("file: Create needs a positive SizeBytes that is a multiple of the block size, not %d", o.SizeBytes)
		}
	}
	return nil
}

// Device is a blockdev.Device on a file or block device. It implements
// Unmapper, ZeroWriter, AllocationStatuser, Resizer (files only; block
// devices answer ErrNotSupported), CompareAndWriter and CopyRanger.
type Device struct {
	f        *os.File
	path     string
	blockDev bool
	direct   bool
	readOnly bool
	// thinBlock: a block device that can deallocate with guaranteed
	// zeros. Files are thin while holes can be punched (noPunch unset).
	thinBlock bool
	lbs, pbs  int64
	memAlign  int // direct I/O buffer alignment

	size   atomic.Int64
	closed atomic.Bool

	// Capabilities found missing at run time.
	noPunch     atomic.Bool // files: fallocate PUNCH_HOLE unsupported
	noZeroRange atomic.Bool // files: fallocate ZERO_RANGE unsupported
	noRWFDSync  atomic.Bool // pwritev2 RWF_DSYNC unsupported

	gate gate
	bufs sync.Pool // *[]byte, aligned bounce buffers of bounceSize (Direct)

	zeroOnce sync.Once
	zeros    []byte // zeroSize zeros, aligned
}

var (
	_ blockdev.Device             = (*Device)(nil)
	_ blockdev.Unmapper           = (*Device)(nil)
	_ blockdev.ZeroWriter         = (*Device)(nil)
	_ blockdev.AllocationStatuser = (*Device)(nil)
	_ blockdev.Resizer            = (*Device)(nil)
	_ blockdev.CompareAndWriter   = (*Device)(nil)
	_ blockdev.CopyRanger         = (*Device)(nil)
)

// Open opens (or with Options.Create creates) the file or block device at
// path.
func Open(ctx context.Context, path string, opts *Options) (*Device, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("file: Open %s: %w", path, err)
	}
	flags := os.O_RDWR
	if o.ReadOnly {
		flags = os.O_RDONLY
	}
	if o.Direct {
		flags |= syscall.O_DIRECT
	}
	f, created, err := openOrCreate(path, flags, &o)
	if err != nil {
		return nil, err
	}
	d, err := setup(f, path, created, &o)
	if err != nil {
		_ = f.Close()
		if created {
			_ = os.Remove(path)
		}
		return nil, err
	}
	return d, nil
}

func openOrCreate(path string, flags int, o *Options) (*os.File, bool, error) {
	if o.Create {
		f, err := os.OpenFile(path, flags|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			if err := createSparse(f, path, o.SizeBytes); err != nil {
				_ = f.Close()
				_ = os.Remove(path)
				return nil, false, err
			}
			return f, true, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, false, fmt.Errorf("file: create %s: %w", path, mapErrno(err))
		}
	}
	// A block device opened for writing is opened exclusively (O_EXCL on
	// a block device): the kernel refuses it while it is mounted or held
	// by another exclusive user, and EBUSY becomes ErrInUse.
	if fi, err := os.Stat(path); err == nil && fi.Mode()&fs.ModeDevice != 0 &&
		fi.Mode()&fs.ModeCharDevice == 0 && !o.ReadOnly {
		flags |= os.O_EXCL
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		return nil, false, fmt.Errorf("file: open %s: %w", path, mapErrno(err))
	}
	return f, false, nil
}

// createSparse sizes a new file and makes its creation durable.
func createSparse(f *os.File, path string, size int64) error {
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("file: create %s: %w", path, mapErrno(err))
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("file: create %s: %w", path, mapErrno(err))
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("file: create %s: %w", path, err)
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("file: create %s: sync directory: %w", path, err)
	}
	return nil
}

// setup reads the geometry, locks the file and probes capabilities.
func setup(f *os.File, path string, created bool, o *Options) (*Device, error) {
	d := &Device{f: f, path: path, direct: o.Direct, readOnly: o.ReadOnly, memAlign: 4096}
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("file: %s: %w", path, err)
	}
	lockHow := unix.LOCK_EX
	if o.ReadOnly {
		lockHow = unix.LOCK_SH
	}
	if err := d.control(func(fd int) error { return unix.Flock(fd, lockHow|unix.LOCK_NB) }); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("file: %s is open elsewhere: %w", path, blockdev.ErrInUse)
		}
		return nil, fmt.Errorf("file: flock %s: %w", path, err)
	}
	var sizeBytes int64
	switch {
	case fi.Mode().IsRegular():
		d.lbs = int64(max(o.LogicalBlockSize, DefaultLogicalBlockSize))
		d.pbs = int64(o.PhysicalBlockSize)
		if d.pbs == 0 {
			d.pbs = max(DefaultPhysicalBlockSize, d.lbs)
		}
		sizeBytes = fi.Size() / d.lbs * d.lbs // a ragged tail is not addressable
		if !o.ReadOnly {
			d.probePunch(fi.Size())
		}
	case fi.Mode()&fs.ModeDevice != 0 && fi.Mode()&fs.ModeCharDevice == 0:
		d.blockDev = true
		geo, err := blockGeometry(f)
		if err != nil {
			return nil, fmt.Errorf("file: %s: %w", path, err)
		}
		d.lbs = geo.lbs
		if o.LogicalBlockSize != 0 {
			if int64(o.LogicalBlockSize)%geo.lbs != 0 {
				return nil, fmt.Errorf("file: %s: LogicalBlockSize %d is not a multiple of the device's %d",
					path, o.LogicalBlockSize, geo.lbs)
			}
			d.lbs = int64(o.LogicalBlockSize)
		}
		d.pbs = max(geo.pbs, d.lbs)
		if o.PhysicalBlockSize != 0 {
			d.pbs = max(int64(o.PhysicalBlockSize), d.lbs)
		}
		sizeBytes = geo.size / d.lbs * d.lbs
		d.thinBlock = !o.ReadOnly && geo.discard && geo.writeZeroes
	default:
		return nil, fmt.Errorf("file: %s is neither a regular file nor a block device (%v): %w",
			path, fi.Mode().Type(), blockdev.ErrNotSupported)
	}
	d.size.Store(sizeBytes)
	if o.Direct {
		if err := d.checkDirect(); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// probePunch finds out whether the file system can punch holes, by
// punching one past the end of the file, which changes nothing.
func (d *Device) probePunch(fileSize int64) {
	if err := d.fallocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, fileSize+d.pbs, d.pbs); err != nil {
		d.noPunch.Store(true)
	}
}

// thin reports whether the Device can deallocate.
func (d *Device) thin() bool {
	if d.readOnly {
		return false
	}
	if d.blockDev {
		return d.thinBlock
	}
	return !d.noPunch.Load()
}

// checkDirect verifies that the logical block size satisfies the file
// system's direct I/O alignment.
func (d *Device) checkDirect() error {
	var stx unix.Statx_t
	err := d.control(func(fd int) error {
		return unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &stx)
	})
	if err == nil && stx.Mask&unix.STATX_DIOALIGN != 0 {
		if stx.Dio_offset_align == 0 {
			return fmt.Errorf("file: %s: the file system does not support O_DIRECT: %w", d.path, blockdev.ErrNotSupported)
		}
		if int64(stx.Dio_offset_align) > d.lbs || d.lbs%int64(stx.Dio_offset_align) != 0 {
			return fmt.Errorf("file: %s: O_DIRECT needs %d-byte alignment; LogicalBlockSize is %d: %w",
				d.path, stx.Dio_offset_align, d.lbs, blockdev.ErrNotSupported)
		}
		d.memAlign = max(d.memAlign, int(stx.Dio_mem_align))
	}
	return nil
}

// control runs fn on the descriptor, which stays open meanwhile.
func (d *Device) control(fn func(fd int) error) error {
	rc, err := d.f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// mapErrno wraps err with the blockdev sentinel for its errno, if any.
func mapErrno(err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), errors.Is(err, syscall.EFBIG):
		return fmt.Errorf("%w: %w", blockdev.ErrNoSpace, err)
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("%w: %w", blockdev.ErrReadOnly, err)
	case errors.Is(err, syscall.EBUSY):
		return fmt.Errorf("%w: %w", blockdev.ErrInUse, err)
	}
	return err
}

// fail wraps an error of operation op.
func (d *Device) fail(op string, err error) error {
	if err == nil {
		return nil
	}
	if d.closed.Load() || errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("file: %s %s: %w", op, d.path, blockdev.ErrClosed)
	}
	return fmt.Errorf("file: %s %s: %w", op, d.path, mapErrno(err))
}

// Info implements blockdev.Device.
func (d *Device) Info() blockdev.Info {
	return blockdev.Info{
		SizeBytes:         d.size.Load(),
		LogicalBlockSize:  int(d.lbs),
		PhysicalBlockSize: int(d.pbs),
		Thin:              d.thin(),
		ReadOnly:          d.readOnly,
	}
}

// Path returns the path the Device was opened with.
func (d *Device) Path() string { return d.path }

// IsBlockDevice reports whether the Device is a block device.
func (d *Device) IsBlockDevice() bool { return d.blockDev }

// begin checks what every call checks before its range: closed, context,
// and for writes read-only.
func (d *Device) begin(ctx context.Context, write bool) error {
	if d.closed.Load() {
		return blockdev.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if write && d.readOnly {
		return blockdev.ErrReadOnly
	}
	return nil
}

func (d *Device) checkRange(off, length int64) error {
	return blockdev.CheckRange(d.Info(), off, length)
}

// ReadAt implements blockdev.Device.
func (d *Device) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := d.begin(ctx, false); err != nil {
		return err
	}
	if err := d.checkRange(off, int64(len(p))); err != nil {
		return err
	}
	return d.fail("read", d.pread(p, off))
}

// pread fills p from off. Bytes past the end of the file (which a
// concurrent shrink may have moved) read as zeros.
func (d *Device) pread(p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	if d.direct && !d.aligned(p) {
		return d.bounce(p, off, d.pread, true)
	}
	n, err := d.f.ReadAt(p, off)
	if err == io.EOF {
		clear(p[n:])
		return nil
	}
	return err
}

// WriteAt implements blockdev.Device.
func (d *Device) WriteAt(ctx context.Context, p []byte, off int64, flags blockdev.WriteFlags) error {
	if err := d.begin(ctx, true); err != nil {
		return err
	}
	return d.gate.write(off, int64(len(p)), func() error {
		if err := d.checkRange(off, int64(len(p))); err != nil {
			return err
		}
		return d.fail("write", d.pwrite(p, off, flags&blockdev.FUA != 0))
	})
}

// pwrite writes p at off; with fua it is durable on return.
func (d *Device) pwrite(p []byte, off int64, fua bool) error {
	if len(p) == 0 {
		return nil
	}
	if d.direct && !d.aligned(p) {
		return d.bounce(p, off, func(buf []byte, off int64) error { return d.pwrite(buf, off, fua) }, false)
	}
	if !fua {
		_, err := d.f.WriteAt(p, off)
		return err
	}
	if !d.noRWFDSync.Load() {
		err := d.control(func(fd int) error {
			for len(p) > 0 {
				n, err := unix.Pwritev2(fd, [][]byte{p}, off, unix.RWF_DSYNC)
				if err == unix.EINTR {
					continue
				}
				if err != nil {
					return err
				}
				if n == 0 {
					return io.ErrShortWrite
				}
				p, off = p[n:], off+int64(n)
			}
			return nil
		})
		if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
			return err
		}
		d.noRWFDSync.Store(true)
	}
	if _, err := d.f.WriteAt(p, off); err != nil {
		return err
	}
	return d.fdatasync()
}

func (d *Device) fdatasync() error {
	return d.control(func(fd int) error {
		for {
			if err := unix.Fdatasync(fd); err != unix.EINTR {
				return err
			}
		}
	})
}

// Flush implements blockdev.Device.
func (d *Device) Flush(ctx context.Context) error {
	if err := d.begin(ctx, false); err != nil {
		return err
	}
	if d.readOnly {
		return nil
	}
	return d.fail("flush", d.fdatasync())
}

// Close implements blockdev.Device: it flushes, then closes the
// descriptor, which releases the lock.
func (d *Device) Close() error {
	if !d.closed.CompareAndSwap(false, true) {
		return blockdev.ErrClosed
	}
	var err error
	if !d.readOnly {
		if ferr := d.fdatasync(); ferr != nil {
			err = fmt.Errorf("file: close %s: flush: %w", d.path, mapErrno(ferr))
		}
	}
	if cerr := d.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("file: close %s: %w", d.path, cerr)
	}
	return err
}
