package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/lunway/lunway/blockdev"
)

// CompareAndWrite implements blockdev.CompareAndWriter.
func (d *Device) CompareAndWrite(ctx context.Context, compare, data []byte, off int64, flags blockdev.WriteFlags) error {
	if len(compare) != len(data) {
		return fmt.Errorf("%w: compare %d bytes, data %d bytes", blockdev.ErrUnaligned, len(compare), len(data))
	}
	if err := d.begin(ctx, true); err != nil {
		return err
	}
	n := int64(len(data))
	if err := d.checkRange(off, n); err != nil {
		return err
	}
	d.gate.enterSlow()
	defer d.gate.exitSlow()
	d.gate.lock(off, n)
	defer d.gate.unlock(off, n)
	var cur []byte
	if d.direct {
		cur = alignedBuf(len(data), d.memAlign)
	} else {
		cur = make([]byte, len(data))
	}
	if err := d.pread(cur, off); err != nil {
		return d.fail("compare and write", err)
	}
	if !bytes.Equal(cur, compare) {
		i := 0
		for cur[i] == compare[i] {
			i++
		}
		return &blockdev.MiscompareError{Offset: int64(i)}
	}
	return d.fail("compare and write", d.pwrite(data, off, flags&blockdev.FUA != 0))
}

// Resize implements blockdev.Resizer for regular files with ftruncate(2):
// growing exposes zeros (a hole), shrinking drops the data past the new
// end. A block device cannot be resized from here: Resize then only
// accepts the device's current capacity (re-read, so that a LUN follows a
// logical volume an administrator grew) and answers anything else with
// blockdev.ErrNotSupported.
func (d *Device) Resize(ctx context.Context, sizeBytes int64) error {
	if err := d.begin(ctx, true); err != nil {
		return err
	}
	if sizeBytes < 0 || sizeBytes%d.lbs != 0 {
		return fmt.Errorf("%w: size %d, block %d", blockdev.ErrUnaligned, sizeBytes, d.lbs)
	}
	d.gate.enterSlow()
	defer d.gate.exitSlow()
	d.gate.lockAll()
	defer d.gate.unlockAll()
	if d.closed.Load() {
		return blockdev.ErrClosed
	}
	if d.blockDev {
		geo, err := blockGeometry(d.f)
		if err != nil {
			return d.fail("resize", err)
		}
		if capacity := geo.size / d.lbs * d.lbs; capacity != sizeBytes {
			return fmt.Errorf("file: resize %s to %d: a block device of %d bytes: %w",
				d.path, sizeBytes, capacity, blockdev.ErrNotSupported)
		}
		d.size.Store(sizeBytes)
		return nil
	}
	if err := d.f.Truncate(sizeBytes); err != nil {
		return d.fail("resize", err)
	}
	// The new size must survive a crash like any metadata change.
	if err := d.f.Sync(); err != nil {
		return d.fail("resize", err)
	}
	d.size.Store(sizeBytes)
	return nil
}

// CopyRange implements blockdev.CopyRanger between file Devices on regular
// files, with copy_file_range(2). Other sources, block devices, an
// overlapping copy within one file and file systems that cannot copy give
// blockdev.ErrNotSupported with nothing changed.
func (d *Device) CopyRange(ctx context.Context, src blockdev.Device, srcOff, dstOff, length int64) error {
	if err := d.begin(ctx, true); err != nil {
		return err
	}
	if err := d.checkRange(dstOff, length); err != nil {
		return err
	}
	if err := blockdev.CheckRange(src.Info(), srcOff, length); err != nil {
		return err
	}
	s, ok := src.(*Device)
	if !ok || d.blockDev || s.blockDev {
		return fmt.Errorf("file: copy range to %s: %w", d.path, blockdev.ErrNotSupported)
	}
	if err := s.begin(ctx, false); err != nil {
		return err
	}
	if length == 0 {
		return nil
	}
	if sameFile(d.f, s.f) && srcOff < dstOff+length && dstOff < srcOff+length {
		return fmt.Errorf("file: copy range within %s: overlapping: %w", d.path, blockdev.ErrNotSupported)
	}
	return d.gate.write(dstOff, length, func() error {
		copied := int64(0)
		err := d.control(func(dfd int) error {
			return s.control(func(sfd int) error {
				for copied < length {
					so, do := srcOff+copied, dstOff+copied
					n, err := unix.CopyFileRange(sfd, &so, dfd, &do, int(min(length-copied, 1<<30)), 0)
					if err == unix.EINTR {
						continue
					}
					if err != nil {
						return err
					}
					if n == 0 {
						return io.ErrUnexpectedEOF
					}
					copied += int64(n)
				}
				return nil
			})
		})
		if err != nil && copied == 0 && (unsupported(err) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL)) {
			return fmt.Errorf("file: copy range to %s: %w (%w)", d.path, blockdev.ErrNotSupported, err)
		}
		return d.fail("copy range", err)
	})
}

func sameFile(a, b *os.File) bool {
	if a == b {
		return true
	}
	ai, aerr := a.Stat()
	bi, berr := b.Stat()
	return aerr == nil && berr == nil && os.SameFile(ai, bi)
}
