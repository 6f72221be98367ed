package vmdk_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/lunway/lunway/image"
	"github.com/lunway/lunway/image/internal/imagetest"
	"github.com/lunway/lunway/image/vmdk"
)

func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// TestHostileImages mutates valid qemu-made VMDKs one structure at a time.
func TestHostileImages(t *testing.T) {
	sparse := imagetest.Seed(t, "vmdk-sparse.vmdk.gz")
	h, err := vmdk.ParseSparseHeader(sparse)
	if err != nil {
		t.Fatal(err)
	}
	gd := int(h.GDOffset) * 512
	gt := int(binary.LittleEndian.Uint32(sparse[gd:])) * 512
	descOff := int(h.DescriptorOffset) * 512
	desc := string(bytes.TrimRight(sparse[descOff:descOff+int(h.DescriptorSize)*512], "\x00"))
	withDesc := func(d string) []byte {
		b := bytes.Clone(sparse)
		clear(b[descOff : descOff+int(h.DescriptorSize)*512])
		copy(b[descOff:], d)
		return b
	}
	// qemu-img puts the grain directory of a streamOptimized VMDK in the
	// header; ours puts it at the end (GDAtEnd), behind a footer.
	stream := ourStream(t)
	sh, _ := vmdk.ParseSparseHeader(stream)
	firstGrain := int(sh.OverHead) * 512 // the first grain marker

	cases := []struct {
		name     string
		img      []byte
		atRead   bool
		sentinel error
		want     string
	}{
		{"grain size", imagetest.Patch(sparse, 20, le64(3)), false, image.ErrCorrupt, "grain size"},
		{"grain size huge", imagetest.Patch(sparse, 20, le64(1<<20)), false, image.ErrCorrupt, "grain size"},
		{"GTEs per GT", imagetest.Patch(sparse, 44, le32(0)), false, image.ErrCorrupt, "numGTEsPerGT"},
		{"capacity", imagetest.Patch(sparse, 12, le64(1<<50)), false, image.ErrLimit, "capacity"},
		{"capacity vs GD", imagetest.Patch(sparse, 12, le64(1<<36)), false, image.ErrCorrupt, "grain directory"},
		{"GD past end", imagetest.Patch(sparse, 56, le64(1<<30)), false, image.ErrCorrupt, "grain directory"},
		{"GT past end", imagetest.Patch(sparse, gd, le32(1<<30)), false, image.ErrCorrupt, "grain table"},
		{"grain past end", imagetest.Patch(sparse, gt, le32(1<<30)), true, image.ErrCorrupt, "past the end"},
		{"version", imagetest.Patch(sparse, 4, le32(7)), false, image.ErrUnsupported, "version"},
		{"compression algorithm", imagetest.Patch(imagetest.Patch(sparse, 8, le32(1<<16|3)), 77, []byte{5, 0}), false, image.ErrUnsupported, "compression algorithm"},
		{"descriptor size", imagetest.Patch(sparse, 36, le64(1<<40)), false, image.ErrLimit, "descriptor"},
		{"descriptor past end", imagetest.Patch(sparse, 28, le64(1<<40)), false, image.ErrCorrupt, "embedded descriptor"},
		{"delta link", withDesc(strings.Replace(desc, "parentCID=ffffffff", "parentCID=12345678", 1)), false, image.ErrUnsupported, "delta link"},
		{"bad parentCID", withDesc(strings.Replace(desc, "parentCID=ffffffff", "parentCID=zz", 1)), false, image.ErrCorrupt, "parentCID"},
		{"footer marker", imagetest.Patch(stream, len(stream)-3*512+12, le32(9)), false, image.ErrCorrupt, "footer marker"},
		{"footer disagrees", imagetest.Patch(stream, len(stream)-2*512+12, le64(1<<20)), false, image.ErrCorrupt, "footer"},
		{"grain marker size", imagetest.Patch(stream, firstGrain+8, le32(1<<30)), true, image.ErrCorrupt, "compressed size"},
		{"grain garbage", imagetest.Patch(stream, firstGrain+12, bytes.Repeat([]byte{0x5a}, 32)), true, image.ErrCorrupt, "grain"},
		{"not a vmdk", []byte("hello, world"), false, image.ErrFormat, "neither"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := vmdk.Open(bytes.NewReader(tc.img), int64(len(tc.img)), nil)
			if tc.atRead {
				if err != nil {
					t.Fatalf("Open: %v (want a ReadAt error)", err)
				}
				_, err = r.ReadAt(make([]byte, 1<<20), 0)
			}
			if err == nil || !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "vmdk: ") {
				t.Fatalf("err %v: want %v naming %q", err, tc.sentinel, tc.want)
			}
		})
	}
}

// TestDescriptorTable parses descriptor texts (golden values).
func TestDescriptorTable(t *testing.T) {
	cases := []struct {
		name, text string
		want       []vmdk.ExtentLine
		createType string
		err        error
	}{
		{"flat", "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 2048 FLAT \"a-flat.vmdk\" 0\n",
			[]vmdk.ExtentLine{{Access: "RW", Sectors: 2048, Type: "FLAT", File: "a-flat.vmdk"}}, "monolithicFlat", nil},
		{"multi", "createType=\"twoGbMaxExtentSparse\"\r\nRW 100 SPARSE \"s 1.vmdk\"\r\nRDONLY 50 ZERO\r\nRW 10 FLAT \"f.bin\" 7\r\n",
			[]vmdk.ExtentLine{{Access: "RW", Sectors: 100, Type: "SPARSE", File: "s 1.vmdk"}, {Access: "RDONLY", Sectors: 50, Type: "ZERO"}, {Access: "RW", Sectors: 10, Type: "FLAT", File: "f.bin", Offset: 7}}, "twoGbMaxExtentSparse", nil},
		{"unterminated", "RW 1 FLAT \"x\n", nil, "", image.ErrCorrupt},
		{"bad sectors", "RW x FLAT \"x\"\n", nil, "", image.ErrCorrupt},
		{"no file", "RW 10 FLAT\n", nil, "", image.ErrCorrupt},
		{"huge", "RW 18446744073709551615 FLAT \"x\"\n", nil, "", image.ErrLimit},
		{"sum too big", "RW 137438953472 ZERO\nRW 137438953472 ZERO\n", nil, "", image.ErrLimit},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := vmdk.ParseDescriptor([]byte(tc.text))
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.CreateType != tc.createType || len(d.Extents) != len(tc.want) {
				t.Fatalf("got %+v", d)
			}
			for i := range tc.want {
				if d.Extents[i] != tc.want[i] {
					t.Fatalf("extent %d: %+v, want %+v", i, d.Extents[i], tc.want[i])
				}
			}
		})
	}
}

// TestSparseHeaderGolden decodes the header of the checked-in seed and
// re-encodes it byte for byte.
func TestSparseHeaderGolden(t *testing.T) {
	b := imagetest.Seed(t, "vmdk-stream.vmdk.gz")
	h, err := vmdk.ParseSparseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != 3 || h.Flags != 0x30003 || h.Capacity != 2048 || h.GrainSize != 128 || h.GDOffset != 26 || h.CompressAlgorithm != 1 {
		t.Fatalf("header %+v", h)
	}
	if enc := h.Append(nil); !bytes.Equal(enc[:79], b[:79]) {
		t.Fatalf("re-encoded header differs:\n%x\n%x", enc[:79], b[:79])
	}
}

// ourStream writes a small streamOptimized VMDK with our writer.
func ourStream(t testing.TB) []byte {
	var buf bytes.Buffer
	w, err := vmdk.NewWriter(&buf, 1<<20, &vmdk.WriterOptions{Subformat: vmdk.StreamOptimized})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(bytes.Repeat([]byte("lunway"), 2000), 4096); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(bytes.Repeat([]byte{9}, 512), 1<<20-512); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func seeds(f *testing.F) [][]byte {
	var out [][]byte
	for _, name := range []string{"vmdk-sparse.vmdk.gz", "vmdk-stream.vmdk.gz", "vmdk-flat-descriptor.vmdk"} {
		out = append(out, imagetest.Seed(f, name))
	}
	return append(out, ourStream(f))
}

func FuzzParseSparseHeader(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s[:min(len(s), 512)])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := vmdk.ParseSparseHeader(b)
		if err != nil {
			if !imagetest.Typed(err) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		h2, err := vmdk.ParseSparseHeader(h.Append(nil))
		if err != nil || *h2 != *h {
			t.Fatalf("round trip: %+v %v, want %+v", h2, err, h)
		}
	})
}

func FuzzParseDescriptor(f *testing.F) {
	s := seeds(f)
	h, _ := vmdk.ParseSparseHeader(s[0])
	f.Add(s[0][h.DescriptorOffset*512 : (h.DescriptorOffset+h.DescriptorSize)*512])
	f.Add(s[2])
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := vmdk.ParseDescriptor(b)
		if err != nil {
			if !imagetest.Typed(err) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		var total uint64
		for _, e := range d.Extents {
			total += e.Sectors
		}
		if total > image.MaxVirtualSize/512 {
			t.Fatalf("extents total %d sectors", total)
		}
	})
}

func FuzzOpen(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(imagetest.Pack(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		file := imagetest.Unpack(b)
		r, err := vmdk.Open(file, file.Size(), nil)
		if err != nil {
			if !imagetest.Typed(err) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		imagetest.Exercise(t, r)
	})
}
