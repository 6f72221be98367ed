// Package mem is an in-memory, sparse blockdev.Device for tests: chunks are
// allocated on first write and dropped by Unmap, so a large device costs
// only what is written.
package mem

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/lunway/lunway/blockdev"
)

// chunkSize is the allocation unit.
const chunkSize = 64 << 10

// Options configure a Device. Zero fields take defaults.
type Options struct {
	LogicalBlockSize  int // default 512
	PhysicalBlockSize int // default 4096
	ReadOnly          bool
}

// Device is a sparse in-memory blockdev.Device. It implements Unmapper,
// ZeroWriter, AllocationStatuser, Resizer and CompareAndWriter.
type Device struct {
	mu struct {
		sync.RWMutex
		info   blockdev.Info
		chunks map[int64][]byte // chunk index → chunkSize bytes
		closed bool
	}
}

var (
	_ blockdev.Device             = (*Device)(nil)
	_ blockdev.Unmapper           = (*Device)(nil)
	_ blockdev.ZeroWriter         = (*Device)(nil)
	_ blockdev.AllocationStatuser = (*Device)(nil)
	_ blockdev.Resizer            = (*Device)(nil)
	_ blockdev.CompareAndWriter   = (*Device)(nil)
)

// New returns an empty device of sizeBytes (a multiple of the logical block size).
func New(sizeBytes int64, opts *Options) (*Device, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.LogicalBlockSize == 0 {
		o.LogicalBlockSize = 512
	}
	if o.PhysicalBlockSize == 0 {
		o.PhysicalBlockSize = 4096
	}
	if o.LogicalBlockSize != 512 && o.LogicalBlockSize != 4096 {
		return nil, fmt.Errorf("mem: logical block size %d: must be 512 or 4096", o.LogicalBlockSize)
	}
	if o.PhysicalBlockSize < o.LogicalBlockSize || o.PhysicalBlockSize%o.LogicalBlockSize != 0 ||
		chunkSize%o.PhysicalBlockSize != 0 {
		return nil, fmt.Errorf("mem: physical block size %d: must be a multiple of %d dividing %d",
			o.PhysicalBlockSize, o.LogicalBlockSize, chunkSize)
	}
	if sizeBytes < 0 || sizeBytes%int64(o.LogicalBlockSize) != 0 {
		return nil, fmt.Errorf("mem: size %d: not a multiple of %d", sizeBytes, o.LogicalBlockSize)
	}
	d := &Device{}
	d.mu.info = blockdev.Info{
		SizeBytes:         sizeBytes,
		LogicalBlockSize:  o.LogicalBlockSize,
		PhysicalBlockSize: o.PhysicalBlockSize,
		Thin:              true,
		ReadOnly:          o.ReadOnly,
	}
	d.mu.chunks = make(map[int64][]byte)
	return d, nil
}

// Info implements blockdev.Device.
func (d *Device) Info() blockdev.Info {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.mu.info
}

func (d *Device) checkLocked(ctx context.Context, off, length int64, write bool) error {
	if d.mu.closed {
		return blockdev.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if write && d.mu.info.ReadOnly {
		return blockdev.ErrReadOnly
	}
	return blockdev.CheckRange(d.mu.info, off, length)
}

// ReadAt implements blockdev.Device.
func (d *Device) ReadAt(ctx context.Context, p []byte, off int64) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if err := d.checkLocked(ctx, off, int64(len(p)), false); err != nil {
		return err
	}
	d.readLocked(p, off)
	return nil
}

func (d *Device) readLocked(p []byte, off int64) {
	for len(p) > 0 {
		idx, in := off/chunkSize, off%chunkSize
		n := min(int64(len(p)), chunkSize-in)
		if c, ok := d.mu.chunks[idx]; ok {
			copy(p[:n], c[in:])
		} else {
			clear(p[:n])
		}
		p, off = p[n:], off+n
	}
}

// WriteAt implements blockdev.Device.
func (d *Device) WriteAt(ctx context.Context, p []byte, off int64, _ blockdev.WriteFlags) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkLocked(ctx, off, int64(len(p)), true); err != nil {
		return err
	}
	d.writeLocked(p, off)
	return nil
}

func (d *Device) writeLocked(p []byte, off int64) {
	for len(p) > 0 {
		idx, in := off/chunkSize, off%chunkSize
		n := min(int64(len(p)), chunkSize-in)
		c, ok := d.mu.chunks[idx]
		if !ok {
			c = make([]byte, chunkSize)
			d.mu.chunks[idx] = c
		}
		copy(c[in:], p[:n])
		p, off = p[n:], off+n
	}
}

// Flush implements blockdev.Device; memory is as durable as it gets.
func (d *Device) Flush(ctx context.Context) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.mu.closed {
		return blockdev.ErrClosed
	}
	return ctx.Err()
}

// Close implements blockdev.Device.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mu.closed {
		return blockdev.ErrClosed
	}
	d.mu.closed = true
	d.mu.chunks = nil
	return nil
}

// Unmap implements blockdev.Unmapper.
func (d *Device) Unmap(ctx context.Context, off, length int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkLocked(ctx, off, length, true); err != nil {
		return err
	}
	d.zeroLocked(off, length)
	return nil
}

// zeroLocked zeroes a range, dropping chunks it covers whole and chunks
// that become all zeros.
func (d *Device) zeroLocked(off, length int64) {
	for length > 0 {
		idx, in := off/chunkSize, off%chunkSize
		n := min(length, chunkSize-in)
		if c, ok := d.mu.chunks[idx]; ok {
			clear(c[in : in+n])
			if n == chunkSize || allZero(c) {
				delete(d.mu.chunks, idx)
			}
		}
		off, length = off+n, length-n
	}
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// WriteZeroes implements blockdev.ZeroWriter.
func (d *Device) WriteZeroes(ctx context.Context, off, length int64, _ bool, _ blockdev.WriteFlags) error {
	return d.Unmap(ctx, off, length)
}

// AllocationStatus implements blockdev.AllocationStatuser at chunk granularity.
func (d *Device) AllocationStatus(ctx context.Context, off, length int64) ([]blockdev.Extent, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if err := d.checkLocked(ctx, off, length, false); err != nil {
		return nil, err
	}
	var out []blockdev.Extent
	for length > 0 {
		idx, in := off/chunkSize, off%chunkSize
		n := min(length, chunkSize-in)
		state := blockdev.Deallocated
		if _, ok := d.mu.chunks[idx]; ok {
			state = blockdev.Mapped
		}
		if k := len(out) - 1; k >= 0 && out[k].State == state {
			out[k].Len += n
		} else {
			out = append(out, blockdev.Extent{Off: off, Len: n, State: state})
		}
		off, length = off+n, length-n
	}
	return out, nil
}

// Resize implements blockdev.Resizer. Shrinking drops the data beyond the end.
func (d *Device) Resize(ctx context.Context, sizeBytes int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mu.closed {
		return blockdev.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if d.mu.info.ReadOnly {
		return blockdev.ErrReadOnly
	}
	if sizeBytes < 0 || sizeBytes%int64(d.mu.info.LogicalBlockSize) != 0 {
		return fmt.Errorf("%w: size %d", blockdev.ErrUnaligned, sizeBytes)
	}
	if old := d.mu.info.SizeBytes; sizeBytes < old {
		d.zeroLocked(sizeBytes, old-sizeBytes)
	}
	d.mu.info.SizeBytes = sizeBytes
	return nil
}

// CompareAndWrite implements blockdev.CompareAndWriter.
func (d *Device) CompareAndWrite(ctx context.Context, compare, data []byte, off int64, _ blockdev.WriteFlags) error {
	if len(compare) != len(data) {
		return fmt.Errorf("%w: compare %d bytes, data %d bytes", blockdev.ErrUnaligned, len(compare), len(data))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkLocked(ctx, off, int64(len(data)), true); err != nil {
		return err
	}
	cur := make([]byte, len(compare))
	d.readLocked(cur, off)
	if !bytes.Equal(cur, compare) {
		i := 0
		for cur[i] == compare[i] {
			i++
		}
		return &blockdev.MiscompareError{Offset: int64(i)}
	}
	d.writeLocked(data, off)
	return nil
}
