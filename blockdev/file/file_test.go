package file_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/blockdevtest"
	"github.com/lunway/lunway/blockdev/file"
	"github.com/lunway/lunway/internal/testenv"
)

var allCaps = blockdevtest.CapUnmap | blockdevtest.CapWriteZeroes | blockdevtest.CapAllocationStatus |
	blockdevtest.CapResize | blockdevtest.CapCompareAndWrite | blockdevtest.CapCopyRange

func openFile(t *testing.T, path string, opts *file.Options) *file.Device {
	t.Helper()
	d, err := file.Open(t.Context(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestConformance(t *testing.T) {
	for _, c := range []struct {
		name   string
		lbs    int
		direct bool
		size   int64
	}{{"512", 512, false, 4 << 20}, {"4096", 4096, false, 2 << 20}, {"direct", 4096, true, 2 << 20}} {
		t.Run(c.name, func(t *testing.T) {
			blockdevtest.Run(t, func(t *testing.T, sizeBytes int64) blockdev.Device {
				p := filepath.Join(t.TempDir(), "lun.img")
				return openFile(t, p, &file.Options{Create: true, SizeBytes: sizeBytes, LogicalBlockSize: c.lbs, Direct: c.direct})
			}, &blockdevtest.Options{
				SizeBytes: c.size,
				ExactCaps: true,
				Caps:      allCaps,
				Reopen: func(t *testing.T, d blockdev.Device) blockdev.Device {
					if err := d.Close(); err != nil {
						t.Fatal(err)
					}
					return openFile(t, d.(*file.Device).Path(), &file.Options{LogicalBlockSize: c.lbs, Direct: c.direct})
				},
				OpenReadOnly: func(t *testing.T, sizeBytes int64) blockdev.Device {
					p := filepath.Join(t.TempDir(), "ro.img")
					w := openFile(t, p, &file.Options{Create: true, SizeBytes: sizeBytes, LogicalBlockSize: c.lbs})
					if err := w.WriteAt(t.Context(), make([]byte, c.lbs), 0, 0); err != nil {
						t.Fatal(err)
					}
					if err := w.Close(); err != nil {
						t.Fatal(err)
					}
					return openFile(t, p, &file.Options{ReadOnly: true, LogicalBlockSize: c.lbs, Direct: c.direct})
				},
			})
		})
	}
}

// allocatedBytes is the space a file occupies (stat's st_blocks).
func allocatedBytes(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

func TestSparse(t *testing.T) {
	ctx := t.Context()
	p := filepath.Join(t.TempDir(), "big.img")
	d := openFile(t, p, &file.Options{Create: true, SizeBytes: 1 << 30})
	defer d.Close()
	info := d.Info()
	if info.SizeBytes != 1<<30 || !info.Thin || info.LogicalBlockSize != 512 || info.PhysicalBlockSize != 4096 {
		t.Fatalf("Info = %+v", info)
	}
	if got := allocatedBytes(t, p); got > 64<<10 {
		t.Fatalf("new 1 GiB device occupies %d bytes", got)
	}
	data := bytes.Repeat([]byte{0xab}, 4<<20)
	if err := d.WriteAt(ctx, data, 512<<20, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := allocatedBytes(t, p); got < 4<<20 || got > 5<<20 {
		t.Fatalf("after a 4 MiB write the file occupies %d bytes", got)
	}
	exts, err := d.AllocationStatus(ctx, 0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	want := []blockdev.Extent{
		{Off: 0, Len: 512 << 20, State: blockdev.Deallocated},
		{Off: 512 << 20, Len: 4 << 20, State: blockdev.Mapped},
		{Off: 516 << 20, Len: 1<<30 - 516<<20, State: blockdev.Deallocated},
	}
	if !slices.Equal(exts, want) {
		t.Fatalf("AllocationStatus = %+v\nwant %+v", exts, want)
	}
	// Unmap 3 MiB of the 4: the space goes back.
	if err := d.Unmap(ctx, 512<<20, 3<<20); err != nil {
		t.Fatal(err)
	}
	if got := allocatedBytes(t, p); got > 1<<20+64<<10 {
		t.Fatalf("after unmapping 3 of 4 MiB the file occupies %d bytes", got)
	}
	// WriteZeroes with unmap frees the rest; without unmap it need not.
	if err := d.WriteZeroes(ctx, 515<<20, 1<<20, true, blockdev.FUA); err != nil {
		t.Fatal(err)
	}
	if got := allocatedBytes(t, p); got > 64<<10 {
		t.Fatalf("after unmapping everything the file occupies %d bytes", got)
	}
	p2 := make([]byte, 4<<20)
	if err := d.ReadAt(ctx, p2, 512<<20); err != nil || !bytes.Equal(p2, make([]byte, 4<<20)) {
		t.Fatalf("unmapped range does not read zeros: %v", err)
	}
}

// TestAllocationStatusRounding writes single blocks and checks that the
// 4 KiB file system blocks around them round to whole logical blocks.
func TestAllocationStatusRounding(t *testing.T) {
	ctx := t.Context()
	p := filepath.Join(t.TempDir(), "r.img")
	d := openFile(t, p, &file.Options{Create: true, SizeBytes: 1 << 20})
	defer d.Close()
	if err := d.WriteAt(ctx, bytes.Repeat([]byte{1}, 512), 8192+1024, 0); err != nil {
		t.Fatal(err)
	}
	exts, err := d.AllocationStatus(ctx, 8192+512, 8192)
	if err != nil {
		t.Fatal(err)
	}
	// The file system allocates [8192, 12288); asked from 8704, the
	// answer starts there and every block up to 12288 is mapped.
	want := []blockdev.Extent{
		{Off: 8704, Len: 12288 - 8704, State: blockdev.Mapped},
		{Off: 12288, Len: 8192 + 8704 - 12288, State: blockdev.Deallocated},
	}
	if !slices.Equal(exts, want) {
		t.Fatalf("AllocationStatus = %+v\nwant %+v", exts, want)
	}
}

func TestCreateExisting(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.img")
	d := openFile(t, p, &file.Options{Create: true, SizeBytes: 1 << 20})
	if err := d.WriteAt(t.Context(), bytes.Repeat([]byte{7}, 512), 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// Create with another size opens the existing file as it is.
	d = openFile(t, p, &file.Options{Create: true, SizeBytes: 2 << 20})
	defer d.Close()
	if d.Info().SizeBytes != 1<<20 {
		t.Errorf("SizeBytes = %d, want the existing 1 MiB", d.Info().SizeBytes)
	}
	b := make([]byte, 512)
	if err := d.ReadAt(t.Context(), b, 0); err != nil || b[0] != 7 {
		t.Errorf("existing data lost: %v", err)
	}
}

func TestRaggedSize(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ragged.img")
	if err := os.WriteFile(p, make([]byte, 5000), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ lbs, want int }{{512, 4608}, {4096, 4096}} {
		d := openFile(t, p, &file.Options{LogicalBlockSize: c.lbs})
		if got := d.Info().SizeBytes; got != int64(c.want) {
			t.Errorf("lbs %d: SizeBytes = %d, want %d", c.lbs, got, c.want)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLock(t *testing.T) {
	p := filepath.Join(t.TempDir(), "l.img")
	w := openFile(t, p, &file.Options{Create: true, SizeBytes: 1 << 20})
	for _, ro := range []bool{false, true} {
		if _, err := file.Open(t.Context(), p, &file.Options{ReadOnly: ro}); !errors.Is(err, blockdev.ErrInUse) {
			t.Errorf("Open(ReadOnly=%v) while open for writing = %v; want ErrInUse", ro, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r1 := openFile(t, p, &file.Options{ReadOnly: true})
	r2 := openFile(t, p, &file.Options{ReadOnly: true})
	if _, err := file.Open(t.Context(), p, nil); !errors.Is(err, blockdev.ErrInUse) {
		t.Errorf("Open for writing while open read-only = %v; want ErrInUse", err)
	}
	r1.Close()
	r2.Close()
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	cases := []struct {
		name string
		ctx  context.Context
		path string
		opts *file.Options
		want error
	}{
		{"canceled", ctx, filepath.Join(dir, "a"), &file.Options{Create: true, SizeBytes: 512}, context.Canceled},
		{"missing", t.Context(), filepath.Join(dir, "missing"), nil, fs.ErrNotExist},
		{"directory", t.Context(), dir, &file.Options{ReadOnly: true}, blockdev.ErrNotSupported},
		{"char device", t.Context(), "/dev/null", nil, blockdev.ErrNotSupported},
		{"bad lbs", t.Context(), filepath.Join(dir, "b"), &file.Options{LogicalBlockSize: 1024}, nil},
		{"bad pbs", t.Context(), filepath.Join(dir, "b"), &file.Options{PhysicalBlockSize: 3 * 512}, nil},
		{"pbs below lbs", t.Context(), filepath.Join(dir, "b"), &file.Options{LogicalBlockSize: 4096, PhysicalBlockSize: 512}, nil},
		{"negative size", t.Context(), filepath.Join(dir, "b"), &file.Options{SizeBytes: -1}, nil},
		{"create no size", t.Context(), filepath.Join(dir, "b"), &file.Options{Create: true}, nil},
		{"create unaligned", t.Context(), filepath.Join(dir, "b"), &file.Options{Create: true, SizeBytes: 1000}, nil},
		{"create read-only", t.Context(), filepath.Join(dir, "b"), &file.Options{Create: true, SizeBytes: 512, ReadOnly: true}, nil},
	}
	for _, c := range cases {
		d, err := file.Open(c.ctx, c.path, c.opts)
		if err == nil {
			d.Close()
			t.Errorf("%s: Open succeeded", c.name)
			continue
		}
		if c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: Open = %v; want %v", c.name, err, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "b")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed Open left a file behind: %v", err)
	}
}

func TestCopyRangeBetweenFiles(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	a := openFile(t, filepath.Join(dir, "a"), &file.Options{Create: true, SizeBytes: 1 << 20})
	defer a.Close()
	b := openFile(t, filepath.Join(dir, "b"), &file.Options{Create: true, SizeBytes: 1 << 20})
	defer b.Close()
	data := bytes.Repeat([]byte("lunway!!"), 8192)
	if err := a.WriteAt(ctx, data, 4096, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.CopyRange(ctx, a, 4096, 65536, int64(len(data))); err != nil {
		t.Fatalf("CopyRange between files: %v", err)
	}
	got := make([]byte, len(data))
	if err := b.ReadAt(ctx, got, 65536); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("copied data differs: %v", err)
	}
	// Within one file, not overlapping: copied; overlapping: refused.
	if err := a.CopyRange(ctx, a, 4096, 512<<10, int64(len(data))); err != nil {
		t.Fatalf("CopyRange within a file: %v", err)
	}
	if err := a.ReadAt(ctx, got, 512<<10); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("copied data differs: %v", err)
	}
	if err := a.CopyRange(ctx, a, 4096, 8192, int64(len(data))); !errors.Is(err, blockdev.ErrNotSupported) {
		t.Fatalf("overlapping CopyRange = %v; want ErrNotSupported", err)
	}
	closed := openFile(t, filepath.Join(dir, "c"), &file.Options{Create: true, SizeBytes: 1 << 20})
	closed.Close()
	if err := b.CopyRange(ctx, closed, 0, 0, 512); !errors.Is(err, blockdev.ErrClosed) {
		t.Fatalf("CopyRange from a closed Device = %v; want ErrClosed", err)
	}
}

// TestNoSpace writes past the space of a small tmpfs.
func TestNoSpace(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "mounting a tmpfs needs root")
	}
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=256k"); err != nil {
		testenv.Unavailable(t, "mount tmpfs: "+err.Error())
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	d := openFile(t, filepath.Join(mnt, "lun.img"), &file.Options{Create: true, SizeBytes: 4 << 20})
	defer d.Close()
	err := d.WriteAt(t.Context(), bytes.Repeat([]byte{1}, 1<<20), 0, 0)
	if !errors.Is(err, blockdev.ErrNoSpace) {
		t.Fatalf("writing 1 MiB into 256 KiB = %v; want ErrNoSpace", err)
	}
	// Unmap gives space back on tmpfs, which punches holes.
	if !d.Info().Thin {
		t.Fatalf("tmpfs device not thin")
	}
	if err := d.Unmap(t.Context(), 0, 4<<20); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteAt(t.Context(), bytes.Repeat([]byte{1}, 64<<10), 0, blockdev.FUA); err != nil {
		t.Fatalf("write after unmap: %v", err)
	}
}
