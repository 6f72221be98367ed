package rbd

import (
	"errors"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/lunway/lunway/blockdev"
)

const (
	m = blockdev.Mapped
	u = blockdev.Deallocated
)

type ext = blockdev.Extent

func x(off, n int64, st blockdev.ExtentState) ext { return ext{Off: off, Len: n, State: st} }

func TestExtents(t *testing.T) {
	tests := []struct {
		name       string
		off, n, bs int64
		offs, lens []int64
		want       []blockdev.Extent
	}{
		{"none", 0, 4096, 512, nil, nil, []ext{x(0, 4096, u)}},
		{"all", 0, 4096, 512, []int64{0}, []int64{4096}, []ext{x(0, 4096, m)}},
		{"beyond both ends", 1024, 1024, 512, []int64{0}, []int64{1 << 20}, []ext{x(1024, 1024, m)}},
		{"middle", 0, 4096, 512, []int64{1024}, []int64{512}, []ext{x(0, 1024, u), x(1024, 512, m), x(1536, 2560, u)}},
		{"partial blocks round outward", 0, 4096, 512, []int64{1000}, []int64{100}, []ext{x(0, 512, u), x(512, 1024, m), x(1536, 2560, u)}},
		{"unsorted overlapping adjacent", 0, 8192, 4096, []int64{4096, 0, 100, 5000}, []int64{10, 4096, 10, 10},
			[]ext{x(0, 8192, m)}},
		{"outside", 4096, 4096, 512, []int64{0, 9000}, []int64{4096, 10}, []ext{x(4096, 4096, u)}},
		{"gaps", 0, 10 * 512, 512, []int64{512, 2048, 4096}, []int64{512, 512, 1024},
			[]ext{x(0, 512, u), x(512, 512, m), x(1024, 1024, u), x(2048, 512, m), x(2560, 1536, u), x(4096, 1024, m)}},
		{"zero-length ranges", 0, 1024, 512, []int64{512}, []int64{0}, []ext{x(0, 1024, u)}},
	}
	for _, tt := range tests {
		got := extents(tt.off, tt.n, tt.bs, tt.offs, tt.lens)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: extents = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// FuzzExtents checks the shape AllocationStatus promises for any ranges
// librbd might report: consecutive block-aligned extents covering exactly
// the query, alternating states, every allocated block mapped.
func FuzzExtents(f *testing.F) {
	f.Add(int64(0), int64(4096), false, []byte{1, 2, 0, 3})
	f.Add(int64(8), int64(100), true, []byte{})
	f.Add(int64(3), int64(7), false, []byte{255, 255, 0, 1, 7, 7})
	f.Fuzz(func(t *testing.T, offBlocks, nBlocks int64, big bool, raw []byte) {
		bs := int64(512)
		if big {
			bs = 4096
		}
		offBlocks, nBlocks = offBlocks&0xffff, nBlocks&0xffff
		off, n := offBlocks*bs, nBlocks*bs
		var offs, lens []int64
		for i := 0; i+1 < len(raw) && i < 64; i += 2 {
			offs = append(offs, off-2*bs+int64(raw[i])*bs/3)
			lens = append(lens, int64(raw[i+1])*bs/5)
		}
		got := extents(off, n, bs, offs, lens)
		pos := off
		for i, x := range got {
			if x.Off != pos || x.Len <= 0 || x.Len%bs != 0 || x.Off%bs != 0 {
				t.Fatalf("extent %d %+v does not continue at %d (extents %v)", i, x, pos, got)
			}
			if i > 0 && got[i-1].State == x.State {
				t.Fatalf("extents %d and %d not merged: %v", i-1, i, got)
			}
			pos += x.Len
		}
		if pos != off+n {
			t.Fatalf("extents end at %d, want %d", pos, off+n)
		}
		state := func(b int64) blockdev.ExtentState {
			for _, x := range got {
				if b >= x.Off && b < x.Off+x.Len {
					return x.State
				}
			}
			t.Fatalf("byte %d not covered", b)
			return 0
		}
		for i := range offs {
			for b := max(offs[i], off); b < min(offs[i]+lens[i], off+n); b = (b/bs + 1) * bs {
				if state(b) != blockdev.Mapped {
					t.Fatalf("allocated byte %d reported %v", b, state(b))
				}
			}
		}
	})
}

func TestSentinel(t *testing.T) {
	tests := []struct {
		errno syscall.Errno
		want  error
	}{
		{syscall.ETIMEDOUT, blockdev.ErrUnavailable},
		{syscall.ENOTCONN, blockdev.ErrUnavailable},
		{syscall.ESHUTDOWN, nil},
		{syscall.ENOSPC, blockdev.ErrNoSpace},
		{syscall.EDQUOT, blockdev.ErrNoSpace},
		{syscall.EROFS, blockdev.ErrReadOnly},
		{syscall.EIO, nil},
		{syscall.ENOENT, nil},
	}
	for _, tt := range tests {
		if got := Sentinel(tt.errno); got != tt.want {
			t.Errorf("Sentinel(%v) = %v, want %v", tt.errno, got, tt.want)
		}
		err := fmt.Errorf("x: %w", &Error{Op: "write", Off: 512, Len: 4096, Errno: tt.errno})
		if !errors.Is(err, tt.errno) || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%v does not unwrap to %v and %v", err, tt.errno, tt.want)
		}
	}
	if !errors.Is(timeoutError("read", 0, 512, time.Second), blockdev.ErrUnavailable) {
		t.Error("timeout is not ErrUnavailable")
	}
}
