package blockmap

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/mem"
	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockmap/format"
)

// fuzzSegments returns real segments (data, GC and meta records) of a
// small volume, and its ID, to seed the fuzzers.
func fuzzSegments(f *testing.F) ([16]byte, map[uint64][]byte) {
	ctx := context.Background()
	s := mem.New(nil)
	defer s.Close()
	opts := testOptions()
	v, err := Create(ctx, s, "f", 1<<20, opts)
	if err != nil {
		f.Fatal(err)
	}
	for i := 0; i < 64; i++ {
		if err := v.WriteAt(ctx, bytes.Repeat([]byte{byte(i)}, 4096), int64(i%16)*8192, 0); err != nil {
			f.Fatal(err)
		}
	}
	if err := v.Unmap(ctx, 0, 8192); err != nil {
		f.Fatal(err)
	}
	if _, err := v.GC(ctx, 0.99); err != nil {
		f.Fatal(err)
	}
	id := v.sb.ID
	if rep, err := v.Check(ctx); err != nil {
		f.Fatalf("Check: %v %q", err, rep.Problems)
	}
	if err := v.Close(); err != nil {
		f.Fatal(err)
	}
	segs := map[uint64][]byte{}
	err = s.List(ctx, format.SegmentPrefix("f"), func(oi backend.ObjectInfo) error {
		seq, _ := format.ParseNumbered(format.SegmentPrefix("f"), oi.Name)
		b, err := readObject(ctx, s, oi.Name, 1<<30)
		segs[seq] = b
		return err
	})
	if err != nil || len(segs) == 0 {
		f.Fatalf("no segments: %v", err)
	}
	return id, segs
}

// FuzzParseSegment feeds damaged segments to the parser that replay, GC
// and Check use: it never panics, returns only records that validate,
// and reports damage as corruption.
func FuzzParseSegment(f *testing.F) {
	id, segs := fuzzSegments(f)
	for seq, b := range segs {
		f.Add(b, seq)
	}
	f.Fuzz(func(t *testing.T, b []byte, seq uint64) {
		recs, end, err := parseSegment(b, id, seq, 512)
		if err != nil && !errors.Is(err, blockdev.ErrCorrupt) && !errors.Is(err, format.ErrUnsupportedVersion) {
			t.Fatalf("error class: %v", err)
		}
		if end > len(b) || (err == nil && end != len(b) && len(b)-end >= format.RecordFixedLen) {
			t.Fatalf("parse ended at %d of %d without an error", end, len(b))
		}
		prev := 0
		for _, r := range recs {
			if r.off != prev || r.hdr.Seq != seq || r.hdr.ID != id {
				t.Fatalf("record at %d out of place", r.off)
			}
			if err := format.CheckPayload(r.hdr, r.payload); err != nil {
				t.Fatalf("returned a record whose payload fails: %v", err)
			}
			prev = r.off + int(r.hdr.HeaderLen) + len(r.payload)
		}
	})
}

// FuzzDecodePage feeds damaged pages to the page loader's decoder.
func FuzzDecodePage(f *testing.F) {
	id, segs := fuzzSegments(f)
	for seq, b := range segs {
		// Real pages: the payload entries of meta records.
		recs, _, _ := parseSegment(b, id, seq, 512)
		for _, r := range recs {
			off := 0
			for _, e := range r.hdr.Entries {
				n := int(e.PayloadBytes(512))
				if e.Kind == format.EntryPage {
					f.Add(bytes.Clone(r.payload[off:off+n]), uint8(e.Level), e.LBA)
				}
				off += n
			}
		}
	}
	leaf, _ := format.AppendLeaf(nil, &format.Leaf{Index: 3, Extents: []format.LeafExtent{{Start: 1, Count: 2, Seq: 4, Off: 512}}})
	f.Add(leaf, uint8(0), uint64(3))
	in, _ := format.AppendInterior(nil, &format.Interior{Level: 1, Index: 0, Children: []format.Child{{Slot: 3, Ref: format.Ref{Len: 48, Seq: 4, Off: 1024, CRC: 1}}}})
	f.Add(in, uint8(1), uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, level uint8, index uint64) {
		ref := format.Ref{Len: uint32(len(b)), CRC: format.PageCRC(b)}
		p, err := decodePage(b, ref, level, index, 10, 8)
		if err != nil && !errors.Is(err, blockdev.ErrCorrupt) {
			t.Fatalf("error class: %v", err)
		}
		if err == nil && (p.leaf == nil) == (p.interior == nil) {
			t.Fatalf("decoded page is neither leaf nor interior")
		}
	})
}
