package format

import (
	"errors"
	"testing"

	"github.com/lunway/lunway/blockdev"
)

// checkDecodeErr fails unless err is nil or a corruption/version error:
// decoders never report anything else, and never panic (the fuzzer
// catches panics).
func checkDecodeErr(t *testing.T, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, blockdev.ErrCorrupt) && !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("unexpected error class: %v", err)
	}
}

func FuzzSuperblock(f *testing.F) {
	f.Add(AppendSuperblock(nil, testSuperblock()))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSuperblock(b)
		checkDecodeErr(t, err)
		if err == nil {
			// A valid decode re-encodes to the same bytes.
			if got := AppendSuperblock(nil, s); string(got) != string(b) {
				t.Fatalf("re-encoding differs")
			}
		}
	})
}

func FuzzCheckpoint(f *testing.F) {
	f.Add(AppendCheckpoint(nil, testCheckpoint()))
	f.Add(AppendSnapshot(nil, &Snapshot{ID: testID, Name: "s", Checkpoint: *testCheckpoint()}))
	f.Add(AppendCloneMarker(nil, &CloneMarker{CloneID: testID, Clone: "c", Snapshot: "s"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCheckpoint(b)
		checkDecodeErr(t, err)
		if err == nil {
			if got := AppendCheckpoint(nil, c); string(got) != string(b) {
				t.Fatalf("re-encoding differs")
			}
		}
		_, err = DecodeSnapshot(b)
		checkDecodeErr(t, err)
		_, err = DecodeCloneMarker(b)
		checkDecodeErr(t, err)
	})
}

func FuzzPage(f *testing.F) {
	leaf, _ := AppendLeaf(nil, testLeaf())
	in, _ := AppendInterior(nil, testInterior())
	f.Add(leaf, uint8(10))
	f.Add(in, uint8(8))
	f.Fuzz(func(t *testing.T, b []byte, shift uint8) {
		l, err := DecodeLeaf(b, shift)
		checkDecodeErr(t, err)
		if err == nil {
			if got, _ := AppendLeaf(nil, l); string(got) != string(b) {
				t.Fatalf("leaf re-encoding differs")
			}
		}
		n, err := DecodeInterior(b, shift)
		checkDecodeErr(t, err)
		if err == nil {
			if got, _ := AppendInterior(nil, n); string(got) != string(b) {
				t.Fatalf("interior re-encoding differs")
			}
		}
	})
}

func FuzzRecordHeader(f *testing.F) {
	h, _ := testRecord()
	f.Add(encodeRecord(h), uint16(512))
	gc := &RecordHeader{Kind: RecordGC, HeaderLen: 1024, ID: testID, Seq: 9, Offset: 4096, PayloadLen: 4096,
		Entries: []Entry{{Kind: EntryMove, Count: 1, LBA: 3, SrcSeq: 2, SrcOff: 512}}}
	f.Add(encodeRecord(gc), uint16(4096))
	meta := &RecordHeader{Kind: RecordMeta, HeaderLen: 512, ID: testID, Seq: 9, PayloadLen: 512,
		Entries: []Entry{{Kind: EntryPage, Level: 1, Count: 52}}}
	f.Add(encodeRecord(meta), uint16(512))
	f.Fuzz(func(t *testing.T, b []byte, bs uint16) {
		r, err := DecodeRecordHeader(b, uint32(bs))
		checkDecodeErr(t, err)
		if err == nil {
			got := make([]byte, r.HeaderLen)
			PutRecordHeader(got, r)
			// Padding after the entries is not covered; compare the rest.
			n := RecordFixedLen + len(r.Entries)*EntryLen
			if string(got[:n]) != string(b[:n]) {
				t.Fatalf("re-encoding differs")
			}
		}
	})
}
