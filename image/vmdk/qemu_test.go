package vmdk_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lunway/lunway/image"
	"github.com/lunway/lunway/image/disk"
	"github.com/lunway/lunway/image/internal/imagetest"
	"github.com/lunway/lunway/image/vmdk"
)

func checkImage(t *testing.T, path string, want []byte) image.Reader {
	t.Helper()
	r, err := disk.Open(path, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	if r.Format() != image.VMDK {
		t.Fatalf("format %v", r.Format())
	}
	ref := imagetest.ConvertToRaw(t, path, "vmdk")
	if r.Size() != int64(len(ref)) {
		t.Fatalf("size %d, qemu-img says %d", r.Size(), len(ref))
	}
	got := imagetest.ReadAll(t, r)
	imagetest.Equal(t, "read vs qemu-img convert", got, ref)
	if want != nil {
		want = append(want, make([]byte, max(0, len(ref)-len(want)))...)
		imagetest.Equal(t, "read vs source", got, want)
	}
	m := imagetest.MustMap(t, r)
	imagetest.CheckMap(t, r, m, got)
	ours := imagetest.ExtentDataRanges(m)
	theirs := imagetest.DataRanges(imagetest.QemuMap(t, path, "vmdk"))
	if imagetest.Sprint(ours) != imagetest.Sprint(theirs) {
		t.Fatalf("data ranges differ\nours:     %s\nqemu-img: %s", imagetest.Sprint(ours), imagetest.Sprint(theirs))
	}
	return r
}

// TestReadQemuImages reads VMDKs that qemu-img made from random sparse data.
func TestReadQemuImages(t *testing.T) {
	cases := []struct {
		name string
		opts string
		size int64
	}{
		{"monolithicSparse", "subformat=monolithicSparse", 5 << 20},
		{"monolithicSparse-odd", "subformat=monolithicSparse", 3<<20 + 1536},
		{"streamOptimized", "subformat=streamOptimized", 5 << 20},
		{"streamOptimized-odd", "subformat=streamOptimized", 2<<20 + 512},
		{"monolithicFlat", "subformat=monolithicFlat", 4 << 20},
		{"twoGbMaxExtentSparse", "subformat=twoGbMaxExtentSparse", 3 << 20},
		{"twoGbMaxExtentFlat", "subformat=twoGbMaxExtentFlat", 3 << 20},
		{"zeroed-grain", "subformat=monolithicSparse,zeroed_grain=on", 2 << 20},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			data := imagetest.RandomSparse(tc.size, 0.3, uint64(i+1))
			src := filepath.Join(dir, "src.raw")
			imagetest.WriteSparse(t, src, data)
			img := filepath.Join(dir, "img.vmdk")
			imagetest.QemuImg(t, "convert", "-f", "raw", "-O", "vmdk", "-o", tc.opts, src, img)
			checkImage(t, img, data)
		})
	}
}

// TestReadLargeSparse reads a 1 GiB stream-optimized image with a few MiB
// of data, and checks that Map skips the holes cheaply.
func TestReadLargeSparse(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	imagetest.QemuImg(t, "create", "-f", "raw", src, "1G")
	f, err := os.OpenFile(src, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	blob := make([]byte, 1<<20)
	for i := range blob {
		blob[i] = byte(i*7 + i>>8 + 1)
	}
	for _, off := range []int64{0, 300 << 20, 1<<30 - 1<<20} {
		if _, err := f.WriteAt(blob, off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	img := filepath.Join(dir, "big.vmdk")
	imagetest.QemuImg(t, "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", src, img)
	r, err := disk.Open(img, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	m := imagetest.MustMap(t, r)
	if got := imagetest.DataBytes(imagetest.ExtentDataRanges(m)); got != 3<<20 {
		t.Fatalf("data bytes %d, want %d", got, 3<<20)
	}
	p := make([]byte, 1<<20)
	if _, err := r.ReadAt(p, 300<<20); err != nil {
		t.Fatal(err)
	}
	imagetest.Equal(t, "block at 300 MiB", p, blob)
}

// TestWriterQemuCheck writes images with our writers and has qemu-img
// check and compare them.
func TestWriterQemuCheck(t *testing.T) {
	cases := []struct {
		name string
		sub  vmdk.Subformat
		size int64
		frac float64
	}{
		{"monolithicSparse", vmdk.MonolithicSparse, 6 << 20, 0.3},
		{"monolithicSparse-odd", vmdk.MonolithicSparse, 5<<20 + 1024, 0.3},
		{"streamOptimized", vmdk.StreamOptimized, 6 << 20, 0.3},
		{"streamOptimized-empty", vmdk.StreamOptimized, 2 << 20, 0},
		{"streamOptimized-full", vmdk.StreamOptimized, 2<<20 + 512, 5},
		{"monolithicFlat", vmdk.MonolithicFlat, 3 << 20, 0.3},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			data := imagetest.RandomSparse(tc.size, tc.frac, uint64(100+i))
			src := filepath.Join(dir, "src.raw")
			imagetest.WriteSparse(t, src, data)
			out := filepath.Join(dir, "out.vmdk")
			f, err := os.Create(out)
			if err != nil {
				t.Fatal(err)
			}
			var w image.Writer
			var flat *os.File
			if tc.sub == vmdk.MonolithicFlat {
				flat, err = os.Create(filepath.Join(dir, "out-flat.vmdk"))
				if err != nil {
					t.Fatal(err)
				}
				w, err = vmdk.NewFlatWriter(f, "out-flat.vmdk", flat, tc.size)
			} else {
				// streamOptimized goes through a pipe-like writer (no WriterAt).
				var dst interface{ Write([]byte) (int, error) } = f
				if tc.sub == vmdk.StreamOptimized {
					dst = onlyWriter{f}
				}
				w, err = vmdk.NewWriter(dst, tc.size, &vmdk.WriterOptions{Subformat: tc.sub, FileName: "out.vmdk"})
			}
			if err != nil {
				t.Fatal(err)
			}
			const chunk = 100<<10 + 512
			for off := int64(0); off < tc.size; off += chunk {
				p := data[off:min(off+chunk, tc.size)]
				if image.IsZero(p) {
					continue
				}
				if _, err := w.WriteAt(p, off); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if flat != nil {
				flat.Close()
			}
			if tc.sub != vmdk.MonolithicFlat {
				imagetest.QemuImg(t, "check", "-f", "vmdk", out)
			}
			imagetest.QemuImg(t, "compare", "-f", "vmdk", "-F", "raw", out, src)
			info := imagetest.QemuImg(t, "info", "-f", "vmdk", out)
			if !strings.Contains(info, "create type: "+string(tc.sub)) {
				t.Fatalf("qemu-img info lacks create type %s:\n%s", tc.sub, info)
			}
			theirs := imagetest.DataBytes(imagetest.DataRanges(imagetest.QemuMap(t, out, "vmdk")))
			var want int64
			const grain = 64 << 10
			for off := int64(0); off < tc.size; off += grain {
				if !image.IsZero(data[off:min(off+grain, tc.size)]) {
					want += min(grain, tc.size-off)
				}
			}
			if tc.sub == vmdk.MonolithicFlat {
				// The flat extent is a sparse raw file: the 4 KiB blocks
				// touched by the non-zero chunks written are allocated.
				want = 0
				next := int64(0)
				for off := int64(0); off < tc.size; off += chunk {
					end := min(off+chunk, tc.size)
					if image.IsZero(data[off:end]) {
						continue
					}
					lo, hi := max(off&^4095, next), (end+4095)&^4095
					want += hi - lo
					next = hi
				}
			}
			if theirs != want {
				t.Fatalf("qemu-img map: %d data bytes, want %d", theirs, want)
			}
			checkImage(t, out, data)
		})
	}
}

type onlyWriter struct{ f *os.File }

func (w onlyWriter) Write(p []byte) (int, error) { return w.f.Write(p) }
