package vhd_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lunway/lunway/image"
	"github.com/lunway/lunway/image/disk"
	"github.com/lunway/lunway/image/internal/imagetest"
	"github.com/lunway/lunway/image/vhd"
)

func checkImage(t *testing.T, path string, want []byte) image.Reader {
	t.Helper()
	r, err := disk.Open(path, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	if r.Format() != image.VHD {
		t.Fatalf("format %v", r.Format())
	}
	ref := imagetest.ConvertToRaw(t, path, "vpc")
	if r.Size() != int64(len(ref)) {
		t.Fatalf("size %d, qemu-img says %d", r.Size(), len(ref))
	}
	got := imagetest.ReadAll(t, r)
	imagetest.Equal(t, "read vs qemu-img convert", got, ref)
	if want != nil {
		want = append(want, make([]byte, max(0, len(ref)-len(want)))...)
		imagetest.Equal(t, "read vs source", got[:len(want)], want)
	}
	m := imagetest.MustMap(t, r)
	imagetest.CheckMap(t, r, m, got)
	ours := imagetest.ExtentDataRanges(m)
	theirs := imagetest.DataRanges(imagetest.QemuMap(t, path, "vpc"))
	if imagetest.Sprint(ours) != imagetest.Sprint(theirs) {
		t.Fatalf("data ranges differ\nours:     %s\nqemu-img: %s", imagetest.Sprint(ours), imagetest.Sprint(theirs))
	}
	return r
}

// TestReadQemuImages reads VHDs that qemu-img made from random sparse data,
// with and without force_size (exact size vs CHS-rounded size).
func TestReadQemuImages(t *testing.T) {
	cases := []struct {
		name string
		opts string
		size int64
	}{
		{"dynamic", "subformat=dynamic", 5 << 20},
		{"dynamic-force-size", "subformat=dynamic,force_size=on", 5<<20 + 512},
		{"dynamic-chs-rounded", "subformat=dynamic", 3<<20 + 4096},
		{"fixed", "subformat=fixed", 4 << 20},
		{"fixed-force-size", "subformat=fixed,force_size=on", 3<<20 + 1024},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			data := imagetest.RandomSparse(tc.size, 0.3, uint64(i+1))
			src := filepath.Join(dir, "src.raw")
			imagetest.WriteSparse(t, src, data)
			img := filepath.Join(dir, "img.vhd")
			imagetest.QemuImg(t, "convert", "-f", "raw", "-O", "vpc", "-o", tc.opts, src, img)
			r := checkImage(t, img, data)
			if strings.Contains(tc.opts, "force_size") && r.Size() != tc.size {
				t.Fatalf("size %d, want exactly %d", r.Size(), tc.size)
			}
		})
	}
}

// TestWriterQemuCheck writes VHDs with our writer; qemu-img must see the
// exact size and the same bytes, and holes must stay holes.
func TestWriterQemuCheck(t *testing.T) {
	cases := []struct {
		name string
		typ  vhd.Type
		size int64
		frac float64
		pipe bool
	}{
		{"dynamic", vhd.Dynamic, 7 << 20, 0.3, false},
		{"dynamic-odd", vhd.Dynamic, 5<<20 + 1536, 0.3, false},
		{"dynamic-empty", vhd.Dynamic, 4 << 20, 0, false},
		{"fixed", vhd.Fixed, 5 << 20, 0.3, false},
		{"fixed-pipe", vhd.Fixed, 3<<20 + 512, 0.3, true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			data := imagetest.RandomSparse(tc.size, tc.frac, uint64(100+i))
			src := filepath.Join(dir, "src.raw")
			imagetest.WriteSparse(t, src, data)
			out := filepath.Join(dir, "out.vhd")
			f, err := os.Create(out)
			if err != nil {
				t.Fatal(err)
			}
			var dst interface{ Write([]byte) (int, error) } = f
			if tc.pipe {
				dst = onlyWriter{f}
			}
			w, err := vhd.NewWriter(dst, tc.size, &vhd.WriterOptions{Type: tc.typ})
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
			imagetest.QemuImg(t, "compare", "-f", "vpc", "-F", "raw", out, src)
			info := imagetest.QemuImg(t, "info", "--output=json", "-f", "vpc", out)
			if !strings.Contains(info, `"virtual-size": `+itoa(tc.size)) {
				t.Fatalf("qemu-img info: want virtual size %d:\n%s", tc.size, info)
			}
			if tc.typ == vhd.Dynamic {
				theirs := imagetest.DataBytes(imagetest.DataRanges(imagetest.QemuMap(t, out, "vpc")))
				var want int64
				const bs = 2 << 20
				for off := int64(0); off < tc.size; off += bs {
					if !image.IsZero(data[off:min(off+bs, tc.size)]) {
						want += min(bs, tc.size-off)
					}
				}
				if theirs != want {
					t.Fatalf("qemu-img map: %d data bytes, want %d", theirs, want)
				}
			}
			checkImage(t, out, data)
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

type onlyWriter struct{ f *os.File }

func (w onlyWriter) Write(p []byte) (int, error) { return w.f.Write(p) }
