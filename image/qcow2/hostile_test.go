package qcow2_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/lunway/lunway/image"
	"github.com/lunway/lunway/image/internal/imagetest"
	"github.com/lunway/lunway/image/qcow2"
)

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// TestHostileImages mutates a valid qemu-made image one structure at a
// time: each must be refused at Open (or, for per-cluster damage, at
// ReadAt) with a typed error naming the structure — never a panic or a
// huge allocation.
func TestHostileImages(t *testing.T) {
	seed := imagetest.Seed(t, "qcow2-v3.qcow2.gz")
	h, err := qcow2.ParseHeader(seed)
	if err != nil {
		t.Fatal(err)
	}
	l1 := int(h.L1TableOffset)
	l2 := int(binary.BigEndian.Uint64(seed[l1:]) & 0x00fffffffffffe00)
	cs := int(h.ClusterSize())
	comp := imagetest.Seed(t, "qcow2-compressed.qcow2.gz")
	ch, _ := qcow2.ParseHeader(comp)
	cl2 := int(binary.BigEndian.Uint64(comp[ch.L1TableOffset:]) & 0x00fffffffffffe00)
	compData := int(binary.BigEndian.Uint64(comp[cl2:]) & (1<<(62-(ch.ClusterBits-8)) - 1))

	cases := []struct {
		name     string
		img      []byte
		atRead   bool // refused by ReadAt rather than Open
		sentinel error
		want     string
	}{
		{"L1 past end", imagetest.Patch(seed, 40, be64(0x7fff0000)), false, image.ErrCorrupt, "L1 table offset"},
		{"L1 unaligned", imagetest.Patch(seed, 40, be64(uint64(l1+8))), false, image.ErrCorrupt, "L1 table offset"},
		{"L1 huge", imagetest.Patch(seed, 36, be32(1<<28)), false, image.ErrLimit, "L1 table"},
		{"L1 too small", imagetest.Patch(seed, 36, be32(0)), false, image.ErrCorrupt, "l1_size"},
		{"L2 overlaps L1", imagetest.Patch(seed, l1, be64(uint64(l1)|1<<63)), false, image.ErrCorrupt, "overlaps"},
		{"L1 entry flags only", imagetest.Patch(seed, l1, be64(1<<63)), false, nil, ""}, // offset 0: unallocated, valid
		{"L2 unaligned", imagetest.Patch(seed, l1, be64(uint64(l2+512))), false, image.ErrCorrupt, "L2 table offset"},
		{"L2 past end", imagetest.Patch(seed, l1, be64(1<<40)), false, image.ErrCorrupt, "L2 table offset"},
		{"refcount table overlaps L1", imagetest.Patch(seed, 48, be64(uint64(l1))), false, image.ErrCorrupt, "refcount table"},
		{"cluster bits", imagetest.Patch(seed, 20, be32(30)), false, image.ErrCorrupt, "cluster_bits"},
		{"virtual size", imagetest.Patch(seed, 24, be64(1<<62)), false, image.ErrLimit, "virtual size"},
		{"encrypted", imagetest.Patch(seed, 32, be32(2)), false, image.ErrUnsupported, "encrypted"},
		{"external data file", imagetest.Patch(seed, 72, be64(1<<2)), false, image.ErrUnsupported, "external data file"},
		{"marked corrupt", imagetest.Patch(seed, 72, be64(1<<1)), false, image.ErrCorrupt, "marked corrupt"},
		{"extended L2 small clusters", imagetest.Patch(seed, 72, be64(1<<4)), false, image.ErrCorrupt, "extended L2"},
		{"unknown feature", imagetest.Patch(seed, 72, be64(1<<20)), false, image.ErrUnsupported, "unknown incompatible"},
		{"zstd", imagetest.Patch(imagetest.Patch(seed, 72, be64(1<<3)), 104, []byte{1}), false, image.ErrUnsupported, "zstd"},
		{"version", imagetest.Patch(seed, 4, be32(4)), false, image.ErrUnsupported, "version"},
		{"backing name size", imagetest.Patch(imagetest.Patch(seed, 8, be64(0x200)), 16, be32(5000)), false, image.ErrCorrupt, "backing_file_size"},
		{"backing name outside header", imagetest.Patch(imagetest.Patch(seed, 8, be64(uint64(cs-4))), 16, be32(100)), false, image.ErrCorrupt, "backing file name"},
		{"backing without resolver", imagetest.Patch(imagetest.Patch(imagetest.Patch(seed, 8, be64(0x300)), 16, be32(4)), 0x300, []byte("base")), false, image.ErrUnsupported, "no resolver"},
		{"extension length", imagetest.Patch(seed, int(h.HeaderLength), append(be32(0x12345678), be32(1<<30)...)), false, image.ErrCorrupt, "header extension"},
		{"header length", imagetest.Patch(seed, 100, be32(100)), false, image.ErrCorrupt, "header_length"},
		{"data past end", imagetest.Patch(seed, l2, be64(1<<40|1<<63)), true, image.ErrCorrupt, "data offset"},
		{"data unaligned", imagetest.Patch(seed, l2, be64(uint64(cs+512)|1<<63)), true, image.ErrCorrupt, "not cluster aligned"},
		{"compressed past end", imagetest.Patch(comp, cl2, be64(1<<62|1<<40)), true, image.ErrCorrupt, "compressed cluster"},
		{"compressed garbage", imagetest.Patch(comp, compData, bytes.Repeat([]byte{0xff}, 64)), true, image.ErrCorrupt, "compressed cluster"},
		{"truncated", seed[:50], false, image.ErrCorrupt, "too short"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := qcow2.Open(bytes.NewReader(tc.img), int64(len(tc.img)), nil)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				imagetest.Exercise(t, r)
				return
			}
			if tc.atRead {
				if err != nil {
					t.Fatalf("Open: %v (want a ReadAt error)", err)
				}
				_, err = r.ReadAt(make([]byte, cs), 0)
			}
			if err == nil || !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "qcow2: ") {
				t.Fatalf("err %v: want %v naming %q", err, tc.sentinel, tc.want)
			}
		})
	}
}

// TestSeedsMatchGolden reads the checked-in seeds: the same bytes as the
// generator wrote (gen.sh: runs of 0x11, 0x22, 0x33, 0x44), and the
// expected map.
func TestSeedsMatchGolden(t *testing.T) {
	want := make([]byte, 1<<20)
	for _, r := range []struct {
		off, n int
		b      byte
	}{{0, 4 << 10, 0x11}, {68 << 10, 8 << 10, 0x22}, {700 << 10, 3 << 10, 0x33}, {1020 << 10, 4 << 10, 0x44}} {
		copy(want[r.off:], bytes.Repeat([]byte{r.b}, r.n))
	}
	for _, name := range []string{"qcow2-v2.qcow2.gz", "qcow2-v3.qcow2.gz", "qcow2-compressed.qcow2.gz", "qcow2-extl2.qcow2.gz"} {
		t.Run(name, func(t *testing.T) {
			b := imagetest.Seed(t, name)
			r, err := qcow2.Open(bytes.NewReader(b), int64(len(b)), nil)
			if err != nil {
				t.Fatal(err)
			}
			imagetest.Equal(t, "content", imagetest.ReadAll(t, r), want)
			m := imagetest.MustMap(t, r)
			got := imagetest.Sprint(imagetest.ExtentDataRanges(m))
			// 4 KiB clusters: the runs rounded out to clusters.
			const golden = "[0,4096) [69632,77824) [716800,720896) [1044480,1048576) "
			if got != golden {
				t.Fatalf("map %s, want %s", got, golden)
			}
		})
	}
}

func FuzzParseHeader(f *testing.F) {
	for _, name := range []string{"qcow2-v2.qcow2.gz", "qcow2-v3.qcow2.gz", "qcow2-compressed.qcow2.gz", "qcow2-overlay.qcow2.gz"} {
		b := imagetest.Seed(f, name)
		f.Add(b[:min(len(b), 4096)])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := qcow2.ParseHeader(b)
		if err != nil {
			if !imagetest.Typed(err) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		// A parsed header re-encodes to the same fixed fields.
		if enc := h.Append(nil); h.Version == 2 && !bytes.Equal(enc[:72], b[:72]) {
			t.Fatalf("re-encoded header differs")
		}
	})
}

func FuzzOpen(f *testing.F) {
	for _, name := range []string{"qcow2-v2.qcow2.gz", "qcow2-v3.qcow2.gz", "qcow2-compressed.qcow2.gz", "qcow2-overlay.qcow2.gz", "qcow2-extl2.qcow2.gz"} {
		f.Add(imagetest.Pack(imagetest.Seed(f, name)))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		file := imagetest.Unpack(b)
		r, err := qcow2.Open(file, file.Size(), nil)
		if err != nil {
			if !imagetest.Typed(err) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		imagetest.Exercise(t, r)
	})
}
