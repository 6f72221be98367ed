package mem_test

import (
	"testing"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/blockdevtest"
	"github.com/lunway/lunway/blockdev/mem"
)

func TestConformance(t *testing.T) {
	for _, geo := range []struct {
		name     string
		lbs, pbs int
		size     int64
	}{{"512", 512, 4096, 4 << 20}, {"4096", 4096, 4096, 2 << 20}, {"512e", 512, 512, 1 << 20}} {
		t.Run(geo.name, func(t *testing.T) {
			newDev := func(t *testing.T, sizeBytes int64, ro bool) blockdev.Device {
				d, err := mem.New(sizeBytes, &mem.Options{LogicalBlockSize: geo.lbs, PhysicalBlockSize: geo.pbs, ReadOnly: ro})
				if err != nil {
					t.Fatal(err)
				}
				return d
			}
			blockdevtest.Run(t, func(t *testing.T, sizeBytes int64) blockdev.Device {
				return newDev(t, sizeBytes, false)
			}, &blockdevtest.Options{
				SizeBytes:    geo.size,
				OpenReadOnly: func(t *testing.T, sizeBytes int64) blockdev.Device { return newDev(t, sizeBytes, true) },
				ExactCaps:    true,
				Caps: blockdevtest.CapUnmap | blockdevtest.CapWriteZeroes | blockdevtest.CapAllocationStatus |
					blockdevtest.CapResize | blockdevtest.CapCompareAndWrite,
			})
		})
	}
}
