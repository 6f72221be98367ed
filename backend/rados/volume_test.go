//go:build ceph

package rados_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/fault"
	"github.com/lunway/lunway/backend/rados"
	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/blockdevtest"
	"github.com/lunway/lunway/blockmap"
)

// volumeOptions are small sizes so that short tests roll segments and
// checkpoint.
func volumeOptions(bs int) *blockmap.Options {
	return &blockmap.Options{
		LogicalBlockSize: bs,
		SegmentSize:      256 << 10,
		CacheBytes:       4 << 20,
		MaxDirtyBytes:    1 << 20,
	}
}

// checkVolume opens volume name read-only and runs Check on it.
func checkVolume(t *testing.T, s backend.Store, name string) {
	t.Helper()
	ro := &blockmap.Options{ReadOnly: true}
	v, err := blockmap.Open(context.Background(), s, name, ro)
	if err != nil {
		t.Errorf("Check: open %s: %v", name, err)
		return
	}
	defer v.Close()
	if rep, err := v.Check(context.Background()); err != nil {
		t.Errorf("Check(%s): %v (problems %q)", name, err, rep.Problems)
	}
}

// fenced is a volume whose store can be cut off, the way a killed
// process's connection is: what reached RADOS stays, nothing else does.
type fenced struct {
	fs   fault.Store
	opts rados.Options
}

// TestCephVolumeConformance runs the device suite on blockmap volumes that
// live entirely in RADOS through the Store, reopening after a clean close
// and after a fenced crash.
func TestCephVolumeConformance(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash=%v", crash), func(t *testing.T) {
			var mu sync.Mutex
			vols := map[blockdev.Device]fenced{}
			open := func(t *testing.T, size int64) blockdev.Device {
				o := clusterOptions(t)
				t.Cleanup(func() {
					// After the suite closed it: the final state checks.
					s, err := rados.Open(context.Background(), &o)
					if err != nil {
						t.Fatal(err)
					}
					defer s.Close()
					checkVolume(t, s, "vol")
				})
				fs := fault.New(openStore(t, o))
				v, err := blockmap.Create(t.Context(), fs, "vol", size, volumeOptions(512))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { fs.Close() })
				mu.Lock()
				vols[v] = fenced{fs, o}
				mu.Unlock()
				return v
			}
			reopen := func(t *testing.T, d blockdev.Device) blockdev.Device {
				mu.Lock()
				f := vols[d]
				mu.Unlock()
				if crash {
					// The old volume is cut off from RADOS mid-stream and
					// abandoned; a new process reconnects.
					f.fs.SetAvailability(fault.Unavailable)
					t.Cleanup(func() { d.Close() })
				} else if err := d.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				fs := fault.New(openStore(t, f.opts))
				t.Cleanup(func() { fs.Close() })
				v, err := blockmap.Open(t.Context(), fs, "vol", volumeOptions(512))
				if err != nil {
					t.Fatalf("reopen: %v", err)
				}
				mu.Lock()
				vols[v] = fenced{fs, f.opts}
				mu.Unlock()
				return v
			}
			blockdevtest.Run(t, open, &blockdevtest.Options{
				SizeBytes: 2 << 20,
				Reopen:    reopen,
				OpenReadOnly: func(t *testing.T, size int64) blockdev.Device {
					s := openStore(t, clusterOptions(t))
					t.Cleanup(func() { s.Close() })
					v, err := blockmap.Create(t.Context(), s, "ro", size, volumeOptions(512))
					if err != nil {
						t.Fatal(err)
					}
					if err := v.Close(); err != nil {
						t.Fatal(err)
					}
					r, err := blockmap.Open(t.Context(), s, "ro", &blockmap.Options{ReadOnly: true})
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

// TestCephVolumeCrash writes a stream of blocks with periodic flushes to a
// volume in RADOS, cuts the store off at a random moment (as kill -9
// would), reopens the volume through a new connection and checks that
// every flushed write survived, that nothing is torn, and that the volume
// passes Check.
func TestCephVolumeCrash(t *testing.T) {
	rounds := 3
	if testing.Short() {
		rounds = 1
	}
	for r := range rounds {
		t.Run(fmt.Sprint(r), func(t *testing.T) { volumeCrashRound(t, uint64(r)) })
	}
}

func volumeCrashRound(t *testing.T, seed uint64) {
	const size, bs = 8 << 20, 4096
	o := clusterOptions(t)
	fs := fault.New(openStore(t, o))
	defer fs.Close()
	ctx := t.Context()
	v, err := blockmap.Create(ctx, fs, "crash", size, volumeOptions(bs))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 99))
	nblocks := int64(size / bs)
	stable := make([][]byte, nblocks)    // nil: zeros
	pending := make([][][]byte, nblocks) // written since the last completed flush began
	var mu sync.Mutex
	crashAfter := time.Duration(300+rng.IntN(1500)) * time.Millisecond
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			if i%8 == 7 {
				// A flush makes everything written before it durable.
				mu.Lock()
				snap := make([][]byte, nblocks)
				for b := range pending {
					if n := len(pending[b]); n > 0 {
						snap[b] = pending[b][n-1]
					}
				}
				mu.Unlock()
				if err := v.Flush(ctx); err != nil {
					return
				}
				mu.Lock()
				for b, p := range snap {
					if p != nil {
						stable[b] = p
						// Keep only what was written after the snapshot.
						k := 0
						for k < len(pending[b]) && !bytes.Equal(pending[b][k], p) {
							k++
						}
						pending[b] = pending[b][k+1:]
					}
				}
				mu.Unlock()
				continue
			}
			b := rng.Int64N(nblocks - 8)
			n := 1 + rng.Int64N(8)
			p := make([]byte, n*bs)
			for k := range n {
				val := fmt.Appendf(nil, "seed %d write %d block %d ", seed, i, b+k)
				copy(p[k*bs:], bytes.Repeat(val, bs/len(val)+1)[:bs])
			}
			mu.Lock()
			for k := range n {
				pending[b+k] = append(pending[b+k], p[k*bs:(k+1)*bs])
			}
			mu.Unlock()
			if err := v.WriteAt(ctx, p, b*bs, 0); err != nil {
				return
			}
		}
	}()
	time.Sleep(crashAfter)
	fs.SetAvailability(fault.Unavailable) // the crash
	<-done
	defer v.Close()

	s2 := openStore(t, o)
	defer s2.Close()
	v2, err := blockmap.Open(ctx, s2, "crash", volumeOptions(bs))
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	got := make([]byte, size)
	if err := v2.ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	flushed, lost := 0, 0
	for b := range nblocks {
		blk := got[b*bs : (b+1)*bs]
		ok := stable[b] == nil && isZero(blk) || stable[b] != nil && bytes.Equal(blk, stable[b])
		for _, p := range pending[b] {
			ok = ok || bytes.Equal(blk, p)
		}
		if stable[b] != nil {
			flushed++
		}
		if !ok {
			lost++
			if lost < 5 {
				t.Errorf("block %d holds neither its flushed content nor a later write", b)
			}
		}
	}
	t.Logf("%d blocks flushed before the crash, %d wrong after reopen", flushed, lost)
	if flushed == 0 {
		t.Errorf("nothing was flushed before the crash; the test proved nothing")
	}
	if err := v2.Close(); err != nil {
		t.Fatal(err)
	}
	checkVolume(t, s2, "crash")
	if errors.Is(err, blockdev.ErrCorrupt) {
		t.Fatal(err)
	}
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
