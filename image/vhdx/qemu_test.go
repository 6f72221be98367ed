package vhdx_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lunway/lunway/image"
	"github.com/lunway/lunway/image/disk"
	"github.com/lunway/lunway/image/internal/imagetest"
	"github.com/lunway/lunway/image/vhdx"
)

func checkImage(t *testing.T, path string, want []byte) image.Reader {
	t.Helper()
	r, err := disk.Open(path, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	if r.Format() != image.VHDX {
		t.Fatalf("format %v", r.Format())
	}
	ref := imagetest.ConvertToRaw(t, path, "vhdx")
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
	theirs := imagetest.DataRanges(imagetest.QemuMap(t, path, "vhdx"))
	// qemu's VHDX driver reports no block status (every block maps as
	// data), so ours must merely be a subset; CheckMap above verified that
	// everything we call a hole reads as zeros.
	if imagetest.DataBytes(ours) > imagetest.DataBytes(theirs) {
		t.Fatalf("data ranges exceed qemu-img's\nours:     %s\nqemu-img: %s", imagetest.Sprint(ours), imagetest.Sprint(theirs))
	}
	return r
}

// TestReadQemuImages reads VHDXs that qemu-img made from random sparse data.
func TestReadQemuImages(t *testing.T) {
	cases := []struct {
		name string
		opts string
		size int64
	}{
		{"dynamic", "subformat=dynamic,block_size=1M", 6 << 20},
		{"dynamic-default-blocks", "subformat=dynamic", 5<<20 + 512},
		{"dynamic-4k-sectors", "subformat=dynamic,block_size=2M,log_size=1M", 4 << 20},
		{"fixed", "subformat=fixed", 4 << 20},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			data := imagetest.RandomSparse(tc.size, 0.3, uint64(i+1))
			src := filepath.Join(dir, "src.raw")
			imagetest.WriteSparse(t, src, data)
			img := filepath.Join(dir, "img.vhdx")
			imagetest.QemuImg(t, "convert", "-f", "raw", "-O", "vhdx", "-o", tc.opts, src, img)
			checkImage(t, img, data)
		})
	}
}

// TestWriterQemuCheck writes VHDXs with our writer and has qemu-img check
// and compare them; dynamic disks must stay sparse.
func TestWriterQemuCheck(t *testing.T) {
	cases := []struct {
		name string
		opts vhdx.WriterOptions
		size int64
		frac float64
		pipe bool
	}{
		{"dynamic-1m", vhdx.WriterOptions{BlockSize: 1 << 20}, 9 << 20, 0.2, false},
		{"dynamic-default", vhdx.WriterOptions{}, 20<<20 + 512, 0.05, false},
		{"dynamic-4k-sectors", vhdx.WriterOptions{BlockSize: 2 << 20, LogicalSectorSize: 4096}, 6 << 20, 0.2, false},
		{"dynamic-empty", vhdx.WriterOptions{}, 4 << 20, 0, false},
		{"fixed", vhdx.WriterOptions{Type: vhdx.Fixed, BlockSize: 1 << 20}, 5<<20 + 1024, 0.3, false},
		{"fixed-pipe", vhdx.WriterOptions{Type: vhdx.Fixed, BlockSize: 1 << 20}, 3 << 20, 0.3, true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			data := imagetest.RandomSparse(tc.size, tc.frac, uint64(100+i))
			src := filepath.Join(dir, "src.raw")
			imagetest.WriteSparse(t, src, data)
			out := filepath.Join(dir, "out.vhdx")
			f, err := os.Create(out)
			if err != nil {
				t.Fatal(err)
			}
			var dst interface{ Write([]byte) (int, error) } = f
			if tc.pipe {
				dst = onlyWriter{f}
			}
			w, err := vhdx.NewWriter(dst, tc.size, &tc.opts)
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
			if tc.opts.LogicalSectorSize == 4096 {
				// qemu does not open VHDX with 4 KiB logical sectors; read it
				// back ourselves.
				r, err := disk.Open(out, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				imagetest.Equal(t, "read back", imagetest.ReadAll(t, r), data)
				return
			}
			imagetest.QemuImg(t, "check", "-f", "vhdx", out)
			imagetest.QemuImg(t, "compare", "-f", "vhdx", "-F", "raw", out, src)
			info := imagetest.QemuImg(t, "info", "--output=json", "-f", "vhdx", out)
			ls := int64(max(512, tc.opts.LogicalSectorSize))
			wantSize := (tc.size + ls - 1) / ls * ls
			if !strings.Contains(info, `"virtual-size": `+strconv.FormatInt(wantSize, 10)) {
				t.Fatalf("qemu-img info: want virtual size %d:\n%s", wantSize, info)
			}
			if tc.opts.Type != vhdx.Fixed {
				// qemu-img map reports every VHDX block as data, so sparseness
				// is checked on the file: 4 MiB of headers, log, metadata and
				// BAT, then only the blocks that hold data.
				bs := int64(tc.opts.BlockSize)
				if bs == 0 {
					bs = 8 << 20
				}
				want := int64(4 << 20)
				for off := int64(0); off < tc.size; off += bs {
					if !image.IsZero(data[off:min(off+bs, tc.size)]) {
						want += bs
					}
				}
				st, err := os.Stat(out)
				if err != nil {
					t.Fatal(err)
				}
				if st.Size() != want {
					t.Fatalf("file of %d bytes, want %d (only blocks with data)", st.Size(), want)
				}
			}
			checkImage(t, out, data)
		})
	}
}

type onlyWriter struct{ f *os.File }

func (w onlyWriter) Write(p []byte) (int, error) { return w.f.Write(p) }
