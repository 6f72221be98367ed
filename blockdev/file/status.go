package file

import (
	"context"
	"errors"

	"golang.org/x/sys/unix"

	"github.com/lunway/lunway/blockdev"
)

// maxExtents bounds one AllocationStatus answer; callers ask again from
// where it stopped.
const maxExtents = 4096

// AllocationStatus implements blockdev.AllocationStatuser with lseek(2)
// SEEK_DATA and SEEK_HOLE. Extents are rounded outwards to logical blocks:
//
//	file:     |--hole--|####data####|--hole--|
//	blocks:   |    |    |    |    |    |    |
//	extents:  |dealloc  |mapped         |dealloc
//
// A block holding any allocated byte is mapped.
func (d *Device) AllocationStatus(ctx context.Context, off, length int64) ([]blockdev.Extent, error) {
	if err := d.begin(ctx, false); err != nil {
		return nil, err
	}
	if err := d.checkRange(off, length); err != nil {
		return nil, err
	}
	var out []blockdev.Extent
	add := func(state blockdev.ExtentState, from, to int64) {
		if k := len(out) - 1; k >= 0 && out[k].State == state && out[k].Off+out[k].Len == from {
			out[k].Len += to - from
			return
		}
		out = append(out, blockdev.Extent{Off: from, Len: to - from, State: state})
	}
	pos, end, bs := off, off+length, d.lbs
	err := d.control(func(fd int) error {
		for pos < end && len(out) < maxExtents {
			data, err := unix.Seek(fd, pos, unix.SEEK_DATA)
			switch {
			case errors.Is(err, unix.ENXIO): // no data from pos to the end of the file
				data = end
			case errors.Is(err, unix.EINVAL): // no SEEK_DATA here: all mapped
				add(blockdev.Mapped, pos, end)
				pos = end
				continue
			case err != nil:
				return err
			}
			if dataBlock := data / bs * bs; dataBlock > pos {
				next := min(dataBlock, end)
				add(blockdev.Deallocated, pos, next)
				pos = next
				continue
			}
			hole, err := unix.Seek(fd, max(pos, data), unix.SEEK_HOLE)
			switch {
			case errors.Is(err, unix.ENXIO): // the file shrank under us
				hole = end
			case err != nil:
				return err
			}
			next := min(max((hole+bs-1)/bs*bs, pos+bs), end)
			add(blockdev.Mapped, pos, next)
			pos = next
		}
		return nil
	})
	if err != nil {
		return nil, d.fail("allocation status", err)
	}
	return out, nil
}
