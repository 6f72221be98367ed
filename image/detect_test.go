package image_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/lunway/lunway/image"
	"github.com/lunway/lunway/image/internal/imagetest"
)

// TestDetect identifies the checked-in seeds and synthetic inputs by
// content only.
func TestDetect(t *testing.T) {
	seeds := map[string]image.Format{
		"qcow2-v2.qcow2.gz":         image.QCOW2,
		"qcow2-v3.qcow2.gz":         image.QCOW2,
		"qcow2-compressed.qcow2.gz": image.QCOW2,
		"vmdk-sparse.vmdk.gz":       image.VMDK,
		"vmdk-stream.vmdk.gz":       image.VMDK,
		"vmdk-flat-descriptor.vmdk": image.VMDK,
		"vhd-dynamic.vhd.gz":        image.VHD,
		"vhd-fixed.vhd.gz":          image.VHD,
		"vhdx-dynamic.vhdx.gz":      image.VHDX,
	}
	for name, want := range seeds {
		b := seedFile(t, name)
		got, err := image.Detect(bytes.NewReader(b), int64(len(b)))
		if err != nil || got != want {
			t.Errorf("%s: %v %v, want %v", name, got, err, want)
		}
	}
	vdi := make([]byte, 1024)
	copy(vdi, "<<< Oracle VM VirtualBox Disk Image >>>\n")
	copy(vdi[0x40:], []byte{0x7f, 0x10, 0xda, 0xbe})
	oldVHD := make([]byte, 4096+511)
	copy(oldVHD[4096:], "conectix")
	cases := []struct {
		name string
		data []byte
		want image.Format
		err  error
	}{
		{"empty", nil, image.Raw, nil},
		{"zeros", make([]byte, 4096), image.Raw, nil},
		{"text", []byte("hello\n"), image.Raw, nil},
		{"descriptor by key", []byte("version=1\ncreateType=\"monolithicFlat\"\n"), image.VMDK, nil},
		{"qcow1", []byte("QFI\xfb\x00\x00\x00\x01........"), "", image.ErrUnsupported},
		{"qed", []byte("QED\x00...."), "", image.ErrUnsupported},
		{"cowd", []byte("COWD...."), "", image.ErrUnsupported},
		{"vdi", vdi, "", image.ErrUnsupported},
		{"vhd 511-byte footer", oldVHD, image.VHD, nil},
		{"short vhd magic", []byte("conectix"), image.VHD, nil},
	}
	for _, tc := range cases {
		got, err := image.Detect(bytes.NewReader(tc.data), int64(len(tc.data)))
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("%s: %q %v, want %q %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

func seedFile(t testing.TB, name string) []byte { return imagetest.Seed(t, name) }

func FuzzDetect(f *testing.F) {
	for _, n := range []string{"qcow2-v3.qcow2.gz", "vmdk-stream.vmdk.gz", "vmdk-flat-descriptor.vmdk", "vhd-fixed.vhd.gz"} {
		b := seedFile(f, n)
		f.Add(b[:min(len(b), 2048)])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := image.Detect(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			if !errors.Is(err, image.ErrUnsupported) && !errors.Is(err, image.ErrCorrupt) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if _, ok := image.ParseFormat(string(got)); !ok {
			t.Fatalf("unknown format %q", got)
		}
	})
}

// TestChunker feeds writes of odd sizes and checks what reaches Emit.
func TestChunker(t *testing.T) {
	got := map[int64][]byte{}
	c := image.Chunker{ClusterSize: 4096, Size: 5*4096 + 100, Emit: func(i int64, d []byte) error {
		if _, dup := got[i]; dup {
			t.Fatalf("cluster %d emitted twice", i)
		}
		got[i] = bytes.Clone(d)
		return nil
	}}
	w := func(p []byte, off int64) {
		t.Helper()
		if _, err := c.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
	}
	w(bytes.Repeat([]byte{1}, 10), 4090)     // straddles clusters 0 and 1
	w(make([]byte, 4096), 8192)              // an all-zero cluster: a hole
	w(bytes.Repeat([]byte{3}, 50), 5*4096+1) // the short last cluster
	if _, err := c.WriteAt([]byte{1}, 100); !errors.Is(err, image.ErrOrder) {
		t.Fatalf("backwards write: %v", err)
	}
	if _, err := c.WriteAt(make([]byte, 200), 5*4096+60); !errors.Is(err, image.ErrOutOfRange) {
		t.Fatalf("write past the end: %v", err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0][4090] != 1 || got[1][3] != 1 || got[1][4] != 0 || got[5][1] != 3 || got[5][51] != 0 || len(got[5]) != 4096 {
		t.Fatalf("emitted clusters %v", keys(got))
	}
}

func keys(m map[int64][]byte) []int64 {
	var k []int64
	for i := range m {
		k = append(k, i)
	}
	return k
}

func TestIsZero(t *testing.T) {
	b := make([]byte, 100)
	if !image.IsZero(b) || !image.IsZero(nil) {
		t.Fatal("zeros")
	}
	for _, i := range []int{0, 1, 7, 8, 63, 99} {
		b[i] = 1
		if image.IsZero(b) {
			t.Fatalf("non-zero byte at %d missed", i)
		}
		b[i] = 0
	}
}
