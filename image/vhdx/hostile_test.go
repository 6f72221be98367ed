package vhdx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/lunway/lunway/image"
	"github.com/lunway/lunway/image/internal/imagetest"
)

// TestHostileImages mutates a valid qemu-made VHDX one structure at a
// time, keeping checksums valid so that the structure itself is judged.
func TestHostileImages(t *testing.T) {
	seed := imagetest.Seed(t, "vhdx-dynamic.vhdx.gz")
	v, err := Open(bytes.NewReader(seed), int64(len(seed)))
	if err != nil {
		t.Fatal(err)
	}
	regions, err := v.regionTable()
	if err != nil {
		t.Fatal(err)
	}
	var batOff, metaOff uint64
	for _, r := range regions {
		switch r.GUID {
		case guidBAT:
			batOff = r.Offset
		case guidMetadata:
			metaOff = r.Offset
		}
	}
	items, err := ParseMetadataTable(seed[metaOff:])
	if err != nil {
		t.Fatal(err)
	}
	item := func(g GUID) int {
		for _, it := range items {
			if it.GUID == g {
				return int(metaOff) + int(it.Offset)
			}
		}
		t.Fatalf("no item %v", g)
		return 0
	}
	headers := func(fn func(*Header)) []byte {
		b := bytes.Clone(seed)
		for _, off := range []int{header1Offset, header2Offset} {
			h, err := ParseHeader(b[off:])
			if err != nil {
				t.Fatal(err)
			}
			fn(h)
			copy(b[off:], h.Append(nil))
		}
		return b
	}
	regionsWith := func(fn func([]Region) []Region) []byte {
		b := bytes.Clone(seed)
		rs := fn(append([]Region(nil), regions...))
		for _, off := range []int{region1Offset, region2Offset} {
			copy(b[off:], appendRegionTable(nil, rs))
		}
		return b
	}
	le64 := func(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
	le32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	cases := []struct {
		name     string
		img      []byte
		sentinel error
		want     string
	}{
		{"file identifier", imagetest.Patch(seed, 0, []byte("vhdxfilf")), image.ErrFormat, "file identifier"},
		{"no valid header", imagetest.Patch(imagetest.Patch(seed, header1Offset, []byte("xxxx")), header2Offset, []byte("xxxx")), image.ErrCorrupt, "no valid header"},
		{"header checksum", imagetest.Patch(imagetest.Patch(seed, header1Offset+200, []byte{1}), header2Offset+200, []byte{1}), image.ErrCorrupt, "header checksum"},
		{"header version", headers(func(h *Header) { h.Version = 2 }), image.ErrUnsupported, "header version"},
		{"log placement", headers(func(h *Header) { h.LogGUID = GUID{1}; h.LogOffset = 12345 }), image.ErrCorrupt, "log at"},
		{"log version", headers(func(h *Header) { h.LogGUID = GUID{1}; h.LogVersion = 3 }), image.ErrUnsupported, "log version"},
		{"region tables", imagetest.Patch(imagetest.Patch(seed, region1Offset+300, []byte{1}), region2Offset+300, []byte{1}), image.ErrCorrupt, "region table checksum"},
		{"BAT region past end", regionsWith(func(rs []Region) []Region {
			for i := range rs {
				if rs[i].GUID == guidBAT {
					rs[i].Offset = 1 << 40
				}
			}
			return rs
		}), image.ErrCorrupt, "BAT region"},
		{"regions overlap", regionsWith(func(rs []Region) []Region {
			for i := range rs {
				if rs[i].GUID == guidBAT {
					rs[i].Offset = metaOff
				}
			}
			return rs
		}), image.ErrCorrupt, "overlaps"},
		{"region over log", regionsWith(func(rs []Region) []Region {
			for i := range rs {
				if rs[i].GUID == guidMetadata {
					rs[i].Offset = v.header.LogOffset
				}
			}
			return rs
		}), image.ErrCorrupt, "overlaps"},
		{"unknown required region", regionsWith(func(rs []Region) []Region {
			return append(rs, Region{GUID: GUID{7}, Offset: 1 << 30, Length: 1 << 20, Required: true})
		}), image.ErrUnsupported, "required region"},
		{"missing region", regionsWith(func(rs []Region) []Region { return rs[:1] }), image.ErrCorrupt, "lacks"},
		{"block size", imagetest.Patch(seed, item(guidFileParameters), le32(3<<20)), image.ErrCorrupt, "block size"},
		{"has parent", imagetest.Patch(seed, item(guidFileParameters)+4, le32(2)), image.ErrUnsupported, "differencing"},
		{"virtual size", imagetest.Patch(seed, item(guidVirtualSize), le64(1<<60)), image.ErrCorrupt, "virtual disk size"},
		{"logical sector", imagetest.Patch(seed, item(guidLogicalSector), le32(1000)), image.ErrCorrupt, "logical sector size"},
		{"metadata signature", imagetest.Patch(seed, int(metaOff), []byte("metadatx")), image.ErrCorrupt, "metadata table"},
		{"metadata item outside", imagetest.Patch(seed, int(metaOff)+32+16, le32(1<<30)), image.ErrCorrupt, "outside the metadata region"},
		{"BAT entry past end", imagetest.Patch(seed, int(batOff), le64(1<<40|payloadFullyPresent)), image.ErrCorrupt, "outside the file"},
		{"BAT entry over metadata", imagetest.Patch(seed, int(batOff), le64(metaOff>>20<<20|payloadFullyPresent)), image.ErrCorrupt, "overlaps metadata"},
		{"BAT entry state", imagetest.Patch(seed, int(batOff), le64(5)), image.ErrCorrupt, "state"},
		{"BAT partially present", imagetest.Patch(seed, int(batOff), le64(payloadPartialPresent)), image.ErrUnsupported, "partially present"},
		{"too short", seed[:4096], image.ErrCorrupt, "shorter than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(bytes.NewReader(tc.img), int64(len(tc.img)))
			if err == nil || !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "vhdx: ") {
				t.Fatalf("err %v: want %v naming %q", err, tc.sentinel, tc.want)
			}
		})
	}
}

// TestGUIDGolden checks the on-disk encoding of a known GUID (MS-VHDX's
// BAT region GUID 2DC27766-F623-4200-9D64-115E9BFD4A08).
func TestGUIDGolden(t *testing.T) {
	want := []byte{0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42, 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08}
	if !bytes.Equal(guidBAT[:], want) {
		t.Fatalf("BAT GUID % x, want % x", guidBAT[:], want)
	}
	if s := guidBAT.String(); s != "2dc27766-f623-4200-9d64-115e9bfd4a08" {
		t.Fatalf("String %s", s)
	}
}

// TestChunkRatio checks the BAT interleaving arithmetic of MS-VHDX 2.5.
func TestChunkRatio(t *testing.T) {
	cases := []struct {
		block, sector uint32
		ratio         uint64
		blocks        uint64
		entries       uint64
	}{
		{1 << 20, 512, 4096, 4096, 4096},
		{1 << 20, 512, 4096, 4097, 4098},
		{32 << 20, 512, 128, 300, 302},
		{32 << 20, 4096, 1024, 1, 1},
		{256 << 20, 512, 16, 0, 0},
	}
	for _, tc := range cases {
		r := chunkRatio(tc.block, tc.sector)
		if r != tc.ratio || batEntries(tc.blocks, r) != tc.entries {
			t.Errorf("block %d sector %d: ratio %d entries %d, want %d %d", tc.block, tc.sector, r, batEntries(tc.blocks, r), tc.ratio, tc.entries)
		}
	}
	if batIndex(4096, 4096) != 4097 || batIndex(4095, 4096) != 4095 {
		t.Error("batIndex")
	}
}

func FuzzParseHeader(f *testing.F) {
	seed := imagetest.Seed(f, "vhdx-dynamic.vhdx.gz")
	f.Add(seed[header1Offset : header1Offset+headerBytes])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			if !imagetest.Typed(err) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if h2, err := ParseHeader(h.Append(nil)); err != nil || *h2 != *h {
			t.Fatalf("round trip: %+v %v", h2, err)
		}
	})
}

func FuzzParseRegionTable(f *testing.F) {
	seed := imagetest.Seed(f, "vhdx-dynamic.vhdx.gz")
	f.Add(seed[region1Offset : region1Offset+regionBytes])
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := ParseRegionTable(b)
		if err != nil {
			if !imagetest.Typed(err) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if len(rs) > maxRegionEntries {
			t.Fatalf("%d regions", len(rs))
		}
	})
}

func FuzzParseMetadataTable(f *testing.F) {
	seed := imagetest.Seed(f, "vhdx-dynamic.vhdx.gz")
	v, err := Open(bytes.NewReader(seed), int64(len(seed)))
	if err != nil {
		f.Fatal(err)
	}
	rs, _ := v.regionTable()
	for _, r := range rs {
		if r.GUID == guidMetadata {
			f.Add(seed[r.Offset : r.Offset+metadataTableBytes])
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := ParseMetadataTable(b); err != nil && !imagetest.Typed(err) {
			t.Fatalf("untyped error %v", err)
		}
	})
}

func FuzzLog(f *testing.F) {
	g := GUID{1, 2, 3}
	e1 := encodeLogEntry(5, 0, g, 1<<20, 1<<20, []logWrite{{off: 1 << 20, data: bytes.Repeat([]byte{1}, 4096)}, {off: 2 << 20, zeroLen: 8192}})
	e2 := encodeLogEntry(6, 0, g, 1<<20, 3<<20, []logWrite{{off: 3 << 20, data: bytes.Repeat([]byte{2}, 4096)}})
	f.Add(append(e1, e2...))
	f.Add(e1)
	f.Fuzz(func(t *testing.T, b []byte) {
		// The log region is 1 MiB; the fuzz input is its start.
		log := make([]byte, 1<<20)
		copy(log, b)
		seq := findLogSequence(log, g)
		if len(seq) == 0 {
			return
		}
		o, err := replay(bytes.NewReader(nil), 1<<20, seq)
		if err != nil {
			if !imagetest.Typed(err) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		p := make([]byte, 8192)
		o.ReadAt(p, 1<<20-4096)
	})
}

func FuzzOpen(f *testing.F) {
	f.Add(imagetest.Pack(imagetest.Seed(f, "vhdx-dynamic.vhdx.gz")))
	f.Fuzz(func(t *testing.T, b []byte) {
		file := imagetest.Unpack(b)
		r, err := Open(file, file.Size())
		if err != nil {
			if !imagetest.Typed(err) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		imagetest.Exercise(t, r)
	})
}
