package iscsi

import (
	"context"

	"github.com/lunway/lunway/blockdev"
)

// The Device behind each capability set. Open returns the type whose
// methods are exactly the optional blockdev interfaces the target
// supports, so that a caller's type assertion never finds a capability
// that would fail with ErrNotSupported. (U: Unmapper, Z: ZeroWriter,
// A: AllocationStatuser.)
type (
	devU   struct{ *Device }
	devZ   struct{ *Device }
	devA   struct{ *Device }
	devUZ  struct{ *Device }
	devUA  struct{ *Device }
	devZA  struct{ *Device }
	devUZA struct{ *Device }
)

func (d devU) Unmap(ctx context.Context, off, length int64) error   { return d.unmap(ctx, off, length) }
func (d devUZ) Unmap(ctx context.Context, off, length int64) error  { return d.unmap(ctx, off, length) }
func (d devUA) Unmap(ctx context.Context, off, length int64) error  { return d.unmap(ctx, off, length) }
func (d devUZA) Unmap(ctx context.Context, off, length int64) error { return d.unmap(ctx, off, length) }

func (d devZ) WriteZeroes(ctx context.Context, off, length int64, unmap bool, flags blockdev.WriteFlags) error {
	return d.writeZeroes(ctx, off, length, unmap, flags)
}
func (d devUZ) WriteZeroes(ctx context.Context, off, length int64, unmap bool, flags blockdev.WriteFlags) error {
	return d.writeZeroes(ctx, off, length, unmap, flags)
}
func (d devZA) WriteZeroes(ctx context.Context, off, length int64, unmap bool, flags blockdev.WriteFlags) error {
	return d.writeZeroes(ctx, off, length, unmap, flags)
}
func (d devUZA) WriteZeroes(ctx context.Context, off, length int64, unmap bool, flags blockdev.WriteFlags) error {
	return d.writeZeroes(ctx, off, length, unmap, flags)
}

func (d devA) AllocationStatus(ctx context.Context, off, length int64) ([]blockdev.Extent, error) {
	return d.allocationStatus(ctx, off, length)
}
func (d devUA) AllocationStatus(ctx context.Context, off, length int64) ([]blockdev.Extent, error) {
	return d.allocationStatus(ctx, off, length)
}
func (d devZA) AllocationStatus(ctx context.Context, off, length int64) ([]blockdev.Extent, error) {
	return d.allocationStatus(ctx, off, length)
}
func (d devUZA) AllocationStatus(ctx context.Context, off, length int64) ([]blockdev.Extent, error) {
	return d.allocationStatus(ctx, off, length)
}

var (
	_ blockdev.Unmapper           = devUZA{}
	_ blockdev.ZeroWriter         = devUZA{}
	_ blockdev.AllocationStatuser = devUZA{}
)

// wrap returns d as the type of its capability set.
func (d *Device) wrap() blockdev.Device {
	f := &d.feat
	switch u, z, a := f.unmap, f.writeSame, f.lbaStatus; {
	case u && z && a:
		return devUZA{d}
	case u && z:
		return devUZ{d}
	case u && a:
		return devUA{d}
	case z && a:
		return devZA{d}
	case u:
		return devU{d}
	case z:
		return devZ{d}
	case a:
		return devA{d}
	}
	return d
}

// Unwrap returns the *Device under a value Open returned, or nil.
func Unwrap(dev blockdev.Device) *Device {
	switch d := dev.(type) {
	case *Device:
		return d
	case devU:
		return d.Device
	case devZ:
		return d.Device
	case devA:
		return d.Device
	case devUZ:
		return d.Device
	case devUA:
		return d.Device
	case devZA:
		return d.Device
	case devUZA:
		return d.Device
	}
	return nil
}
