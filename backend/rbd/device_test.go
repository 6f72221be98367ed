//go:build ceph

package rbd_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lunway/lunway/backend/rados"
	"github.com/lunway/lunway/backend/rbd"
	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/blockdevtest"
	"github.com/lunway/lunway/internal/testenv"
)

// testOptions returns device options for a new image on the test cluster,
// removed when the test ends.
func testOptions(t *testing.T, size int64) rbd.Options {
	t.Helper()
	env := testenv.Ceph(t)
	var b [6]byte
	rand.Read(b[:])
	o := rbd.Options{
		ConnOptions: rados.ConnOptions{ConfFile: env["CEPH_CONF"], Keyring: env["CEPH_KEYRING"]},
		Pool:        env["CEPH_POOL"],
		Image:       "lw-test-" + hex.EncodeToString(b[:]),
		Create:      true,
		SizeBytes:   size,
	}
	t.Cleanup(func() { removeImage(t, o) })
	return o
}

func openDevice(t *testing.T, o rbd.Options) *rbd.Device {
	t.Helper()
	d, err := rbd.Open(t.Context(), &o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return d
}

func TestCephConformance(t *testing.T) {
	for _, bs := range []int{512, 4096} {
		t.Run(fmt.Sprintf("bs=%d", bs), func(t *testing.T) {
			opts := map[blockdev.Device]rbd.Options{}
			open := func(t *testing.T, size int64) blockdev.Device {
				o := testOptions(t, size)
				o.LogicalBlockSize = bs
				d := openDevice(t, o)
				opts[d] = o
				return d
			}
			blockdevtest.Run(t, open, &blockdevtest.Options{
				SizeBytes: 4 << 20,
				Reopen: func(t *testing.T, d blockdev.Device) blockdev.Device {
					o := opts[d]
					if err := d.Close(); err != nil {
						t.Fatalf("Close: %v", err)
					}
					d2 := openDevice(t, o)
					opts[d2] = o
					return d2
				},
				OpenReadOnly: func(t *testing.T, size int64) blockdev.Device {
					o := testOptions(t, size)
					o.LogicalBlockSize = bs
					openDevice(t, o).Close()
					o.ReadOnly, o.Create = true, false
					return openDevice(t, o)
				},
				ExactCaps: true,
				Caps: blockdevtest.CapUnmap | blockdevtest.CapWriteZeroes | blockdevtest.CapAllocationStatus |
					blockdevtest.CapResize | blockdevtest.CapHealth | blockdevtest.CapAsyncIO,
			})
		})
	}
}

// TestCephUnmapReadsZeros: ranges smaller than librbd's discard
// granularity, inside and across objects, read as zeros after Unmap.
func TestCephUnmapReadsZeros(t *testing.T) {
	o := testOptions(t, 16<<20)
	d := openDevice(t, o)
	defer d.Close()
	ctx := t.Context()
	data := bytes.Repeat([]byte{0xcd}, 12<<20)
	if err := d.WriteAt(ctx, data, 0, 0); err != nil {
		t.Fatal(err)
	}
	model := bytes.Clone(data)
	for _, r := range [][2]int64{{4096, 512}, {65536 - 512, 1024}, {4<<20 - 4096, 8192}, {1 << 20, 3 << 20}, {6 << 20, 2 << 20}, {8 << 20, 4 << 20}} {
		if err := d.Unmap(ctx, r[0], r[1]); err != nil {
			t.Fatalf("Unmap(%d, %d): %v", r[0], r[1], err)
		}
		clear(model[r[0] : r[0]+r[1]])
	}
	got := make([]byte, len(model))
	if err := d.ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, model) {
		for i := range got {
			if got[i] != model[i] {
				t.Fatalf("byte %d is %#x after Unmap, want %#x", i, got[i], model[i])
			}
		}
	}
	// A whole unmapped object is deallocated.
	exts, err := d.AllocationStatus(ctx, 8<<20, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(exts) != 1 || exts[0].State != blockdev.Deallocated || exts[0].Len != 4<<20 {
		t.Fatalf("AllocationStatus of an unmapped object = %v", exts)
	}
}

// TestCephExclusiveLock: a second device asking for the lock fails with
// ErrInUse naming the holder, and gets it once the first closes.
func TestCephExclusiveLock(t *testing.T) {
	o := testOptions(t, 4<<20)
	o.ExclusiveLock = true
	a := openDevice(t, o)
	defer a.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	b, err := rbd.Open(ctx, &o)
	if err == nil {
		b.Close()
		t.Fatal("second Open with ExclusiveLock succeeded")
	}
	t.Log(err)
	if !errors.Is(err, blockdev.ErrInUse) || !strings.Contains(err.Error(), "locked by the client at ") {
		t.Fatalf("second Open = %v; want ErrInUse naming the holder", err)
	}
	// The holder keeps writing.
	if err := a.WriteAt(t.Context(), bytes.Repeat([]byte{1}, 4096), 0, blockdev.FUA); err != nil {
		t.Fatal(err)
	}
	// Without asking for the lock, a reader still opens it.
	ro := o
	ro.ExclusiveLock, ro.ReadOnly, ro.Create = false, true, false
	r := openDevice(t, ro)
	p := make([]byte, 4096)
	if err := r.ReadAt(t.Context(), p, 0); err != nil || p[0] != 1 {
		t.Fatalf("read-only ReadAt = %v, %x", err, p[0])
	}
	r.Close()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b = openDevice(t, o)
	if err := b.WriteAt(t.Context(), make([]byte, 4096), 0, blockdev.FUA); err != nil {
		t.Fatal(err)
	}
	b.Close()
}

// TestCephMetadata: image-meta round trip, as the daemon keeps identities.
func TestCephMetadata(t *testing.T) {
	o := testOptions(t, 1<<20)
	d := openDevice(t, o)
	defer d.Close()
	ctx := t.Context()
	if v, ok, err := d.Metadata(ctx, rbd.MetadataNAA); err != nil || ok {
		t.Fatalf("Metadata(unset) = %q, %v, %v", v, ok, err)
	}
	long := strings.Repeat("x", 1000)
	for _, v := range []string{"6004a4c57aabbccddeeff00112233445", long} {
		if err := d.SetMetadata(ctx, rbd.MetadataNAA, v); err != nil {
			t.Fatal(err)
		}
		if got, ok, err := d.Metadata(ctx, rbd.MetadataNAA); err != nil || !ok || got != v {
			t.Fatalf("Metadata = %q, %v, %v; want %q", got, ok, err, v)
		}
	}
	ro := o
	ro.ReadOnly, ro.Create = true, false
	r := openDevice(t, ro)
	defer r.Close()
	if got, ok, _ := r.Metadata(ctx, rbd.MetadataNAA); !ok || got != long {
		t.Fatalf("read-only Metadata = %q, %v", got, ok)
	}
	if err := r.SetMetadata(ctx, rbd.MetadataSerial, "x"); !errors.Is(err, blockdev.ErrReadOnly) {
		t.Fatalf("SetMetadata on a read-only device = %v", err)
	}
}

// TestCephExternalResize: a resize made through another handle is noticed
// and reported.
func TestCephExternalResize(t *testing.T) {
	o := testOptions(t, 4<<20)
	o.SizePollInterval = 100 * time.Millisecond
	var seen atomic.Int64
	o.OnResize = func(size int64) { seen.Store(size) }
	d := openDevice(t, o)
	defer d.Close()
	o2 := o
	o2.OnResize, o2.SizePollInterval = nil, -1
	other := openDevice(t, o2)
	if err := other.Resize(t.Context(), 8<<20); err != nil {
		t.Fatal(err)
	}
	other.Close()
	deadline := time.Now().Add(10 * time.Second)
	for seen.Load() != 8<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("resize not noticed: size %d, callback saw %d", d.Info().SizeBytes, seen.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := d.Info().SizeBytes; got != 8<<20 {
		t.Fatalf("Info().SizeBytes = %d", got)
	}
	if err := d.WriteAt(t.Context(), make([]byte, 4096), 8<<20-4096, 0); err != nil {
		t.Fatalf("write in the grown range: %v", err)
	}
}

// TestCephOpenErrors: what is wrong is named, and configuration errors are
// not reported as transient.
func TestCephOpenErrors(t *testing.T) {
	o := testOptions(t, 1<<20)
	tests := []struct {
		name string
		mod  func(o *rbd.Options)
		want string
		is   error
	}{
		{"missing image", func(o *rbd.Options) { o.Create = false }, "does not exist", rbd.ErrConfig},
		{"missing size", func(o *rbd.Options) { o.SizeBytes = 0 }, "size: required", rbd.ErrConfig},
		{"wrong pool", func(o *rbd.Options) { o.Pool = "no-such-pool" }, `pool: "no-such-pool" does not exist`, rbd.ErrConfig},
		{"bad feature", func(o *rbd.Options) { o.Features = []string{"layering", "warp-drive"} }, "unknown feature", rbd.ErrConfig},
		{"no lock feature", func(o *rbd.Options) {
			o.Features, o.ExclusiveLock = []string{"layering"}, true
		}, "lacks the exclusive-lock feature", rbd.ErrConfig},
		{"unreachable", func(o *rbd.Options) {
			o.ConfFile, o.MonHost, o.ConnectTimeout = "", "127.0.0.1:1", 2*time.Second
		}, "no monitor answered", blockdev.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := o
			tt.mod(&o)
			d, err := rbd.Open(t.Context(), &o)
			if err == nil {
				d.Close()
				t.Fatal("Open succeeded")
			}
			t.Log(err)
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open = %v; want %v containing %q", err, tt.is, tt.want)
			}
			if tt.is != blockdev.ErrUnavailable && errors.Is(err, blockdev.ErrUnavailable) {
				t.Fatalf("configuration error reported as transient: %v", err)
			}
		})
	}
}

// TestCephParallel: many concurrent requests of mixed sizes, more than
// MaxInFlight, all land.
func TestCephParallel(t *testing.T) {
	o := testOptions(t, 64<<20)
	o.MaxInFlight = 8
	d := openDevice(t, o)
	defer d.Close()
	ctx := t.Context()
	const workers = 32
	errc := make(chan error, workers)
	for w := range workers {
		go func() {
			p := bytes.Repeat([]byte{byte(w + 1)}, (w%4+1)*16<<10)
			off := int64(w) * 2 << 20
			if err := d.WriteAt(ctx, p, off, 0); err != nil {
				errc <- err
				return
			}
			got := make([]byte, len(p))
			if err := d.ReadAt(ctx, got, off); err != nil {
				errc <- err
				return
			}
			if !bytes.Equal(got, p) {
				errc <- fmt.Errorf("worker %d read back different data", w)
				return
			}
			errc <- nil
		}()
	}
	for range workers {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st := d.Stats(); st.Writes != workers || st.Reads != workers || st.InFlight != 0 || st.Errors != 0 {
		t.Fatalf("Stats = %+v", st)
	}
	if h := d.Health(); h != blockdev.Healthy {
		t.Fatalf("Health = %v", h)
	}
}
