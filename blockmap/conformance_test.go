package blockmap

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/dir"
	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/blockdevtest"
)

// TestConformance runs the Device conformance suite on volumes over
// in-memory stores with and without Overwriter and over a directory,
// with both block sizes, reopening after a clean close and after a
// simulated crash.
func TestConformance(t *testing.T) {
	type storeKind struct {
		name string
		new  func(t *testing.T) backend.Store
	}
	stores := []storeKind{
		{"mem", func(t *testing.T) backend.Store { return memStore(t, true) }},
		{"mem-putonly", func(t *testing.T) backend.Store { return memStore(t, false) }},
		{"dir", func(t *testing.T) backend.Store {
			s, err := dir.Open(context.Background(), t.TempDir(), &dir.Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}},
	}
	for si, sk := range stores {
		for _, bs := range []int{512, 4096} {
			for _, crash := range []bool{false, true} {
				// Under the race detector, one variant per store.
				if raceEnabled && (bs == 512) != (si%2 == 0) || raceEnabled && crash != (si != 1) {
					continue
				}
				t.Run(fmt.Sprintf("%s/bs=%d/crash=%v", sk.name, bs, crash), func(t *testing.T) {
					t.Parallel()
					opts := testOptions()
					opts.LogicalBlockSize = bs
					var n atomic.Int64
					stores := map[blockdev.Device]backend.Store{}
					names := map[blockdev.Device]string{}
					open := func(t *testing.T, size int64) blockdev.Device {
						st := sk.new(t)
						name := fmt.Sprintf("v%d", n.Add(1))
						v := newVolume(t, st, name, size, opts)
						stores[v], names[v] = st, name
						return v
					}
					reopen := func(t *testing.T, d blockdev.Device) blockdev.Device {
						v := d.(*Volume)
						if crash {
							v.abandon()
						} else if err := v.Close(); err != nil {
							t.Fatalf("Close: %v", err)
						}
						v2, err := Open(context.Background(), stores[d], names[d], opts)
						if err != nil {
							t.Fatalf("reopen: %v", err)
						}
						stores[v2], names[v2] = stores[d], names[d]
						return v2
					}
					blockdevtest.Run(t, open, &blockdevtest.Options{
						SizeBytes: 4 << 20,
						Reopen:    reopen,
						OpenReadOnly: func(t *testing.T, size int64) blockdev.Device {
							st := sk.new(t)
							v := newVolume(t, st, "ro", size, opts)
							if err := v.Close(); err != nil {
								t.Fatal(err)
							}
							ro := *opts
							ro.ReadOnly = true
							r, err := Open(context.Background(), st, "ro", &ro)
							if err != nil {
								t.Fatal(err)
							}
							return r
						},
						ExactCaps: true,
						Caps: blockdevtest.CapUnmap | blockdevtest.CapWriteZeroes | blockdevtest.CapAllocationStatus |
							blockdevtest.CapResize | blockdevtest.CapCompareAndWrite | blockdevtest.CapCopyRange | blockdevtest.CapHealth,
					})
				})
			}
		}
	}
}
