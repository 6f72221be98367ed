package vhd_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/lunway/lunway/image"
	"github.com/lunway/lunway/image/internal/imagetest"
	"github.com/lunway/lunway/image/vhd"
)

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// footerWith returns img with its footer (and, for a dynamic disk, the
// copy at offset 0) changed by fn and re-checksummed.
func footerWith(t *testing.T, img []byte, fn func(*vhd.Footer)) []byte {
	t.Helper()
	f, err := vhd.ParseFooter(img[len(img)-512:])
	if err != nil {
		t.Fatal(err)
	}
	fn(f)
	b := imagetest.Patch(img, len(img)-512, f.Append(nil))
	if bytes.HasPrefix(img, []byte("conectix")) {
		b = imagetest.Patch(b, 0, f.Append(nil))
	}
	return b
}

// headerWith changes the dynamic header and re-checksums it.
func headerWith(t *testing.T, img []byte, fn func(*vhd.DynamicHeader)) []byte {
	t.Helper()
	h, err := vhd.ParseDynamicHeader(img[512:])
	if err != nil {
		t.Fatal(err)
	}
	fn(h)
	return imagetest.Patch(img, 512, h.Append(nil))
}

// TestHostileImages mutates valid qemu-made VHDs one structure at a time.
func TestHostileImages(t *testing.T) {
	fixed := imagetest.Seed(t, "vhd-fixed.vhd.gz")
	dyn := imagetest.Seed(t, "vhd-dynamic.vhd.gz")
	h, err := vhd.ParseDynamicHeader(dyn[512:])
	if err != nil {
		t.Fatal(err)
	}
	bat := int(h.TableOffset)
	cases := []struct {
		name     string
		img      []byte
		sentinel error
		want     string
	}{
		{"footer checksum", imagetest.Patch(fixed, len(fixed)-100, []byte{1}), image.ErrCorrupt, "footer checksum"},
		{"differencing", footerWith(t, dyn, func(f *vhd.Footer) { f.DiskType = 4 }), image.ErrUnsupported, "differencing"},
		{"disk type", footerWith(t, fixed, func(f *vhd.Footer) { f.DiskType = 7 }), image.ErrCorrupt, "disk type"},
		{"current size", footerWith(t, fixed, func(f *vhd.Footer) { f.CurrentSize = 1 << 60 }), image.ErrLimit, "current size"},
		{"header offset", footerWith(t, dyn, func(f *vhd.Footer) { f.DataOffset = 1 << 40 }), image.ErrCorrupt, "dynamic header offset"},
		{"header checksum", imagetest.Patch(dyn, 512+100, []byte{1}), image.ErrCorrupt, "dynamic header checksum"},
		{"block size", headerWith(t, dyn, func(h *vhd.DynamicHeader) { h.BlockSize = 3000 }), image.ErrCorrupt, "block size"},
		{"BAT entries huge", headerWith(t, dyn, func(h *vhd.DynamicHeader) { h.MaxTableEntries = 1 << 30 }), image.ErrLimit, "block allocation table"},
		{"BAT entries few", headerWith(t, dyn, func(h *vhd.DynamicHeader) { h.MaxTableEntries = 0 }), image.ErrCorrupt, "needs"},
		{"BAT past end", headerWith(t, dyn, func(h *vhd.DynamicHeader) { h.TableOffset = 1 << 40 }), image.ErrCorrupt, "block allocation table at"},
		{"BAT over header", headerWith(t, dyn, func(h *vhd.DynamicHeader) { h.TableOffset = 600 }), image.ErrCorrupt, "overlaps the dynamic header"},
		{"block past end", imagetest.Patch(dyn, bat, be32(1<<30)), image.ErrCorrupt, "block allocation table entry"},
		{"block over BAT", imagetest.Patch(dyn, bat, be32(uint32(bat/512))), image.ErrCorrupt, "overlaps the table"},
		{"too short", fixed[:100], image.ErrCorrupt, "too short"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := vhd.Open(bytes.NewReader(tc.img), int64(len(tc.img)))
			if err == nil || !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "vhd: ") {
				t.Fatalf("err %v: want %v naming %q", err, tc.sentinel, tc.want)
			}
		})
	}
	// A dynamic disk whose footer is damaged opens from the copy at the start.
	d := imagetest.Patch(dyn, len(dyn)-100, []byte{1})
	r, err := vhd.Open(bytes.NewReader(d), int64(len(d)))
	if err != nil {
		t.Fatalf("damaged footer with a good copy: %v", err)
	}
	imagetest.Exercise(t, r)
}

// TestGeometry checks the CHS algorithm of the VHD specification against
// values qemu-img and Hyper-V produce.
func TestGeometry(t *testing.T) {
	cases := []struct {
		size    int64
		c       uint16
		h, s    uint8
		chsSize int64
	}{
		{1 << 20, 30, 4, 17, 1044480},
		{100 << 20, 1003, 12, 17, 104761344},
		{10 << 30, 20805, 16, 63, 10737377280},
		{200 << 30, 65535, 16, 255, 136899993600},
	}
	for _, tc := range cases {
		c, h, s := vhd.Geometry(tc.size)
		if tc.chsSize != 0 && (c != tc.c || h != tc.h || s != tc.s || int64(c)*int64(h)*int64(s)*512 != tc.chsSize) {
			t.Errorf("Geometry(%d) = %d/%d/%d, want %d/%d/%d", tc.size, c, h, s, tc.c, tc.h, tc.s)
		}
		if int64(c)*int64(h)*int64(s)*512 > tc.size {
			t.Errorf("Geometry(%d) = %d/%d/%d: larger than the disk", tc.size, c, h, s)
		}
	}
}

func FuzzParseFooter(f *testing.F) {
	for _, n := range []string{"vhd-fixed.vhd.gz", "vhd-dynamic.vhd.gz"} {
		b := imagetest.Seed(f, n)
		f.Add(b[len(b)-512:])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ft, err := vhd.ParseFooter(b)
		if err != nil {
			if !imagetest.Typed(err) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		// The fields re-encode as read. The checksum (bytes 64-67) covers
		// the reserved bytes too, which Append writes as zeros, so it is
		// compared by parsing the re-encoded footer instead.
		enc := ft.Append(nil)
		if !bytes.Equal(enc[:64], b[:64]) || !bytes.Equal(enc[68:85], b[68:85]) {
			t.Fatalf("re-encoded footer differs")
		}
		back, err := vhd.ParseFooter(enc)
		if err != nil {
			t.Fatalf("re-encoded footer does not parse: %v", err)
		}
		back.Checksum, ft.Checksum = 0, 0
		if *back != *ft {
			t.Fatalf("re-encoded footer parses to %+v, want %+v", back, ft)
		}
	})
}

func FuzzParseDynamicHeader(f *testing.F) {
	f.Add(imagetest.Seed(f, "vhd-dynamic.vhd.gz")[512:1536])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := vhd.ParseDynamicHeader(b)
		if err != nil {
			if !imagetest.Typed(err) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if h.BlockSize == 0 || h.BlockSize&(h.BlockSize-1) != 0 {
			t.Fatalf("accepted block size %d", h.BlockSize)
		}
	})
}

func FuzzOpen(f *testing.F) {
	for _, n := range []string{"vhd-fixed.vhd.gz", "vhd-dynamic.vhd.gz"} {
		f.Add(imagetest.Pack(imagetest.Seed(f, n)))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		file := imagetest.Unpack(b)
		r, err := vhd.Open(file, file.Size())
		if err != nil {
			if !imagetest.Typed(err) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		imagetest.Exercise(t, r)
	})
}
