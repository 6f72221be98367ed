package file

import (
	"context"
	"errors"

	"golang.org/x/sys/unix"

	"github.com/lunway/lunway/blockdev"
)

// Unmap implements blockdev.Unmapper.
func (d *Device) Unmap(ctx context.Context, off, length int64) error {
	if err := d.begin(ctx, true); err != nil {
		return err
	}
	return d.gate.write(off, length, func() error {
		if err := d.checkRange(off, length); err != nil {
			return err
		}
		return d.fail("unmap", d.zero(off, length, true, false))
	})
}

// WriteZeroes implements blockdev.ZeroWriter.
func (d *Device) WriteZeroes(ctx context.Context, off, length int64, unmap bool, flags blockdev.WriteFlags) error {
	if err := d.begin(ctx, true); err != nil {
		return err
	}
	return d.gate.write(off, length, func() error {
		if err := d.checkRange(off, length); err != nil {
			return err
		}
		return d.fail("write zeroes", d.zero(off, length, unmap, flags&blockdev.FUA != 0))
	})
}

// unsupported reports whether err means the operation is not available.
func unsupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS)
}

func (d *Device) fallocate(mode uint32, off, n int64) error {
	return d.control(func(fd int) error {
		for {
			if err := unix.Fallocate(fd, mode, off, n); err != unix.EINTR {
				return err
			}
		}
	})
}

// zero makes [off, off+n) read as zeros, deallocating it if unmap is set
// and the storage can.
func (d *Device) zero(off, n int64, unmap, fua bool) error {
	if n == 0 {
		return nil
	}
	var err error
	if d.blockDev {
		err = d.zeroBlockDev(off, n, unmap)
	} else {
		err = d.zeroFile(off, n, unmap)
	}
	if err == nil && fua {
		err = d.fdatasync()
	}
	return err
}

func (d *Device) zeroFile(off, n int64, unmap bool) error {
	const keep = unix.FALLOC_FL_KEEP_SIZE
	if unmap && !d.noPunch.Load() {
		err := d.fallocate(unix.FALLOC_FL_PUNCH_HOLE|keep, off, n)
		if !unsupported(err) {
			return err
		}
		d.noPunch.Store(true)
	}
	if !d.noZeroRange.Load() {
		err := d.fallocate(unix.FALLOC_FL_ZERO_RANGE|keep, off, n)
		if !unsupported(err) {
			return err
		}
		d.noZeroRange.Store(true)
	}
	return d.writeZeros(off, n)
}

func (d *Device) zeroBlockDev(off, n int64, unmap bool) error {
	if unmap && d.thinBlock {
		// The kernel issues WRITE ZEROES allowing deallocation, without
		// falling back to writing zeros itself.
		err := d.fallocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
		if !unsupported(err) {
			return err
		}
	}
	return d.blkZeroOut(off, n)
}

// writeZeros writes zero buffers over [off, off+n).
func (d *Device) writeZeros(off, n int64) error {
	z := d.zeroBuf()
	for n > 0 {
		m := min(n, int64(len(z)))
		if err := d.pwrite(z[:m], off, false); err != nil {
			return err
		}
		off, n = off+m, n-m
	}
	return nil
}
