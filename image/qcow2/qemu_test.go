package qcow2_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lunway/lunway/image"
	"github.com/lunway/lunway/image/disk"
	"github.com/lunway/lunway/image/internal/imagetest"
	"github.com/lunway/lunway/image/qcow2"
)

// TestReadQemuImages converts random sparse raw data with qemu-img and
// checks that the reader returns the same bytes and a map that agrees
// with qemu-img map.
func TestReadQemuImages(t *testing.T) {
	cases := []struct {
		name string
		opts []string
		size int64
	}{
		{"v2", []string{"-o", "compat=0.10"}, 5<<20 + 512},
		{"v3", []string{"-o", "compat=1.1"}, 5 << 20},
		{"v3-cluster4k", []string{"-o", "compat=1.1,cluster_size=4096"}, 3<<20 + 1536},
		{"v3-cluster2m", []string{"-o", "compat=1.1,cluster_size=2M"}, 7 << 20},
		{"v2-compressed", []string{"-c", "-o", "compat=0.10"}, 4 << 20},
		{"v3-compressed", []string{"-c", "-o", "compat=1.1"}, 4<<20 + 4096},
		{"v3-compressed-cluster512", []string{"-c", "-o", "compat=1.1,cluster_size=512"}, 1 << 20},
		{"v3-odd-size", []string{"-o", "compat=1.1"}, 3<<20 + 12345},
		{"v3-extended-l2", []string{"-o", "compat=1.1,extended_l2=on"}, 5 << 20},
		{"v3-extended-l2-cluster2m", []string{"-o", "compat=1.1,extended_l2=on,cluster_size=2M"}, 6 << 20},
		{"v3-extended-l2-compressed", []string{"-c", "-o", "compat=1.1,extended_l2=on,cluster_size=16k"}, 2 << 20},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			data := imagetest.RandomSparse(tc.size, 0.3, uint64(i+1))
			src := filepath.Join(dir, "src.raw")
			imagetest.WriteSparse(t, src, data)
			img := filepath.Join(dir, "img.qcow2")
			args := append([]string{"convert", "-f", "raw", "-O", "qcow2"}, tc.opts...)
			imagetest.QemuImg(t, append(args, src, img)...)
			checkImage(t, img, data)
		})
	}
}

func checkImage(t *testing.T, path string, want []byte) image.Reader {
	t.Helper()
	r, err := disk.Open(path, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	if r.Format() != image.QCOW2 {
		t.Fatalf("format %v", r.Format())
	}
	ref := imagetest.ConvertToRaw(t, path, "qcow2")
	if r.Size() != int64(len(ref)) {
		t.Fatalf("size %d, qemu-img says %d", r.Size(), len(ref))
	}
	got := imagetest.ReadAll(t, r)
	imagetest.Equal(t, "read vs qemu-img convert", got, ref)
	if want != nil {
		// qemu-img rounds a raw source up to whole sectors.
		want = append(want, make([]byte, max(0, len(ref)-len(want)))...)
		imagetest.Equal(t, "read vs source", got, want)
	}
	m := imagetest.MustMap(t, r)
	imagetest.CheckMap(t, r, m, got)
	ours := imagetest.ExtentDataRanges(m)
	theirs := imagetest.DataRanges(imagetest.QemuMap(t, path, "qcow2"))
	if imagetest.Sprint(ours) != imagetest.Sprint(theirs) {
		t.Fatalf("data ranges differ\nours:     %s\nqemu-img: %s", imagetest.Sprint(ours), imagetest.Sprint(theirs))
	}
	return r
}

// TestReadBackingChain reads an overlay whose backing file is itself an
// overlay, with zero clusters written by qemu-io on top.
func TestReadBackingChain(t *testing.T) {
	dir := t.TempDir()
	const size = 4 << 20
	base := imagetest.RandomSparse(size, 0.5, 7)
	imagetest.WriteSparse(t, filepath.Join(dir, "base.raw"), base)
	imagetest.QemuImg(t, "convert", "-f", "raw", "-O", "qcow2", filepath.Join(dir, "base.raw"), filepath.Join(dir, "base.qcow2"))
	imagetest.QemuImg(t, "create", "-f", "qcow2", "-F", "qcow2", "-b", "base.qcow2", filepath.Join(dir, "mid.qcow2"))
	// The top is bigger than its backing file: the tail reads as zeros.
	imagetest.QemuImg(t, "create", "-f", "qcow2", "-F", "qcow2", "-b", "mid.qcow2", filepath.Join(dir, "top.qcow2"), "6M")
	qemuIO(t, filepath.Join(dir, "mid.qcow2"), "write -P 0xab 1M 192k")
	qemuIO(t, filepath.Join(dir, "top.qcow2"), "write -z 1M 64k", "write -P 0xcd 3968k 256k", "write -P 0x11 5M 4k")
	r := checkImage(t, filepath.Join(dir, "top.qcow2"), nil)
	if q := r.(interface{ Format() image.Format }); q.Format() != image.QCOW2 {
		t.Fatal("format")
	}
}

func qemuIO(t *testing.T, path string, cmds ...string) {
	t.Helper()
	bin := "qemu-io"
	args := []string{"-f", "qcow2"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	imagetest.RunTool(t, bin, "qemu-utils", append(args, path)...)
}

// TestBackingLoop makes two images name each other as backing files.
func TestBackingLoop(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.qcow2"), filepath.Join(dir, "b.qcow2")
	imagetest.QemuImg(t, "create", "-f", "qcow2", a, "1M")
	imagetest.QemuImg(t, "create", "-f", "qcow2", "-F", "qcow2", "-b", "a.qcow2", b)
	// Point a at b by rewriting a's header with qemu-img rebase -u.
	imagetest.QemuImg(t, "rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b", "b.qcow2", a)
	_, err := disk.Open(b, nil)
	if err == nil || !strings.Contains(err.Error(), "loops") {
		t.Fatalf("Open of a looping chain: %v, want a loop error", err)
	}
}

// TestWriterQemuCheck writes images with our writer and has qemu-img check
// and compare them, and checks that holes stay holes.
func TestWriterQemuCheck(t *testing.T) {
	cases := []struct {
		name string
		opts qcow2.WriterOptions
		size int64
		frac float64
	}{
		{"v3", qcow2.WriterOptions{}, 6 << 20, 0.3},
		{"v2", qcow2.WriterOptions{Version: 2}, 6<<20 + 512, 0.3},
		{"v3-cluster512", qcow2.WriterOptions{ClusterSize: 512}, 2<<20 + 1024, 0.2},
		{"v3-cluster2m", qcow2.WriterOptions{ClusterSize: 2 << 20}, 9 << 20, 0.1},
		{"empty", qcow2.WriterOptions{}, 3 << 20, 0},
		{"full", qcow2.WriterOptions{ClusterSize: 4096}, 1 << 20, 5},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			data := imagetest.RandomSparse(tc.size, tc.frac, uint64(100+i))
			src := filepath.Join(dir, "src.raw")
			imagetest.WriteSparse(t, src, data)
			out := filepath.Join(dir, "out.qcow2")
			f, err := os.Create(out)
			if err != nil {
				t.Fatal(err)
			}
			w, err := qcow2.NewWriter(f, tc.size, &tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			// Feed unaligned chunks of 100 KiB + 7 bytes, skipping zero chunks.
			const chunk = 100<<10 + 7
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
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			imagetest.QemuImg(t, "check", "-f", "qcow2", out)
			imagetest.QemuImg(t, "compare", "-f", "qcow2", "-F", "raw", out, src)
			info := imagetest.QemuImg(t, "info", "-f", "qcow2", out)
			wantCompat := "compat: 1.1"
			if tc.opts.Version == 2 {
				wantCompat = "compat: 0.10"
			}
			if !strings.Contains(info, wantCompat) {
				t.Fatalf("qemu-img info lacks %q:\n%s", wantCompat, info)
			}
			// Every allocated cluster holds data: allocated bytes are at most
			// the data rounded out to clusters.
			alloc := imagetest.DataBytes(imagetest.DataRanges(imagetest.QemuMap(t, out, "qcow2")))
			cs := int64(tc.opts.ClusterSize)
			if cs == 0 {
				cs = 64 << 10
			}
			var want int64
			for off := int64(0); off < tc.size; off += cs {
				if !image.IsZero(data[off:min(off+cs, tc.size)]) {
					want += min(cs, tc.size-off)
				}
			}
			if alloc != want {
				t.Fatalf("qemu-img map: %d data bytes, want %d (non-zero clusters)", alloc, want)
			}
			checkImage(t, out, data)
		})
	}
}

// TestReadWithSnapshots reads the active layer of an image that has
// internal snapshots: snapshot tables are ignored, shared clusters read.
func TestReadWithSnapshots(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "snap.qcow2")
	imagetest.QemuImg(t, "create", "-f", "qcow2", img, "3M")
	qemuIO(t, img, "write -P 0x21 0 256k", "write -P 0x22 1M 64k")
	imagetest.QemuImg(t, "snapshot", "-c", "first", img)
	qemuIO(t, img, "write -P 0x23 128k 256k", "write -z 1M 32k")
	imagetest.QemuImg(t, "snapshot", "-c", "second", img)
	qemuIO(t, img, "write -P 0x24 2M 4k")
	checkImage(t, img, nil)
}

// TestReadExtendedL2Backing writes single subclusters of an overlay with
// extended L2 entries: the rest of each cluster comes from the backing
// file, subcluster by subcluster.
func TestReadExtendedL2Backing(t *testing.T) {
	dir := t.TempDir()
	base := imagetest.RandomSparse(4<<20, 0.7, 8)
	imagetest.WriteSparse(t, filepath.Join(dir, "base.raw"), base)
	top := filepath.Join(dir, "top.qcow2")
	imagetest.QemuImg(t, "create", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=128k", "-F", "raw", "-b", "base.raw", top)
	qemuIO(t, top, "write -P 0x61 4k 4k", "write -z 256k 8k", "write -P 0x62 1M 12k", "write -P 0x63 3M 200k")
	checkImage(t, top, nil)
}
