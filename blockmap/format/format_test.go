package format

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/lunway/lunway/blockdev"
)

var testID = [16]byte{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10}

func testSuperblock() *Superblock {
	return &Superblock{
		ID: testID, CreatedUnixNano: 0x0102030405060708, Name: "vm1",
		BlockSize: 512, PhysicalBlockSize: 4096, SegmentSize: 4 << 20,
		LeafShift: 10, FanoutShift: 8,
		Ancestry: []Ancestor{{Volume: "base", Snapshot: "s1", ID: [16]byte{0xaa}}},
	}
}

func testCheckpoint() *Checkpoint {
	return &Checkpoint{
		ID: testID, Gen: 7, SizeBytes: 1 << 30, ReplaySeq: 0x20, NextSeq: 0x25, Height: 2,
		Root:              Ref{Layer: 0, Len: 52, Seq: 0x21, Off: 0x200, CRC: 0xdeadbeef},
		GuestBytesWritten: 4096, BackendBytesWritten: 8192,
		Usage: []SegUsage{{Seq: 3, LiveBytes: 4096}, {Seq: 0x21, LiveBytes: 200, Flags: UsageShared}},
	}
}

func testLeaf() *Leaf {
	return &Leaf{Index: 5, Extents: []LeafExtent{
		{Start: 0, Count: 8, Layer: 0, Seq: 3, Off: 512},
		{Start: 16, Count: 1, Layer: 1, Seq: 9, Off: 0x1000},
	}}
}

func testInterior() *Interior {
	return &Interior{Level: 1, Index: 0, Children: []Child{
		{Slot: 5, Ref: Ref{Len: 72, Seq: 0x21, Off: 0x200, CRC: 0x11223344}},
	}}
}

func testRecord() (*RecordHeader, []byte) {
	payload := make([]byte, 1024)
	for i := range payload {
		payload[i] = byte(i)
	}
	h := &RecordHeader{
		Kind: RecordData, HeaderLen: 512, ID: testID, Seq: 0x21, Offset: 0,
		PayloadLen: 1024, PayloadCRC: Checksum(payload),
		Entries: []Entry{
			{Kind: EntryWrite, Count: 2, LBA: 100},
			{Kind: EntryUnmap, Count: 50, LBA: 1000},
			{Kind: EntryRef, Layer: 1, Count: 1, LBA: 7, SrcSeq: 3, SrcOff: 512},
		},
	}
	return h, payload
}

func encodeRecord(h *RecordHeader) []byte {
	b := make([]byte, h.HeaderLen)
	PutRecordHeader(b, h)
	return b
}

type golden struct {
	name string
	enc  []byte
	hex  string // leading bytes, hand-checked against the layouts in the doc comments
}

func goldenCases() []golden {
	leaf, _ := AppendLeaf(nil, testLeaf())
	in, _ := AppendInterior(nil, testInterior())
	rh, _ := testRecord()
	return []golden{
		{"superblock", AppendSuperblock(nil, testSuperblock()),
			// magic LUNWAYSB, version 1, reserved, total length 96 = 64 fixed + 4 name + 24 ancestor + 4 CRC
			"4c554e5741595342" + "0100" + "0000" + "60000000" +
				// volume ID
				"0102030405060708090a0b0c0d0e0f10" +
				// created, block size 512, physical 4096, segment 4 MiB
				"0807060504030201" + "00020000" + "00100000" + "00004000" +
				// leaf shift 10, fanout shift 8, 1 ancestor, 9 reserved
				"0a0801" + "000000000000000000" +
				// name "vm1", ancestor "base"@"s1"
				"03766d31" + "0462617365" + "027331"},
		{"checkpoint", AppendCheckpoint(nil, testCheckpoint()),
			"4c554e574159434b" /* 128 = 116 fixed + 8 rows + 4 CRC */ + "0100" + "0000" + "80000000" +
				"0102030405060708090a0b0c0d0e0f10" +
				// gen 7, size 1 GiB, replay 0x20, next 0x25
				"0700000000000000" + "0000004000000000" + "2000000000000000" + "2500000000000000" +
				// height 2, reserved; root ref: layer 0, len 52, seq 0x21, off 0x200, crc
				"02000000" + "00000000" + "34000000" + "2100000000000000" + "00020000" + "efbeadde" +
				"00000000" + "0010000000000000" + "0020000000000000" +
				// 2 rows: seq 3, live 4096 (varint 80 20), flags 0; delta 0x1e, live 200 (c8 01), shared
				"02000000" + "03" + "8020" + "00" + "1e" + "c801" + "01"},
		{"leaf", leaf,
			// magic LWPG, leaf, level 0, reserved, index 5, 2 entries, crc (skipped: 4 bytes)
			"4c575047" + "01" + "00" + "0000" + "0500000000000000" + "02000000"},
		{"interior", in,
			"4c575047" + "02" + "01" + "0000" + "0000000000000000" + "01000000"},
		{"record", encodeRecord(rh),
			// magic, version, kind data, reserved, header length 512
			"4c554e5741595243" + "0100" + "01" + "00" + "00020000" +
				"0102030405060708090a0b0c0d0e0f10" +
				// seq 0x21, offset 0, 3 entries, payload 1024
				"2100000000000000" + "00000000" + "03000000" + "00040000"},
	}
}

func TestGolden(t *testing.T) {
	for _, g := range goldenCases() {
		t.Run(g.name, func(t *testing.T) {
			want, err := hex.DecodeString(g.hex)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(g.enc, want) {
				t.Fatalf("encoding starts\n%x\nwant\n%x", g.enc[:min(len(g.enc), len(want))], want)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	sb := testSuperblock()
	got, err := DecodeSuperblock(AppendSuperblock(nil, sb))
	if err != nil || !reflect.DeepEqual(got, sb) {
		t.Fatalf("superblock: %+v, %v", got, err)
	}
	sb.Ancestry = nil
	if got, err := DecodeSuperblock(AppendSuperblock(nil, sb)); err != nil || !reflect.DeepEqual(got, sb) {
		t.Fatalf("superblock without ancestry: %+v, %v", got, err)
	}
	ck := testCheckpoint()
	if got, err := DecodeCheckpoint(AppendCheckpoint(nil, ck)); err != nil || !reflect.DeepEqual(got, ck) {
		t.Fatalf("checkpoint: %+v, %v", got, err)
	}
	snap := &Snapshot{ID: testID, CreatedUnixNano: 99, Name: "nightly-1", Checkpoint: *ck}
	if got, err := DecodeSnapshot(AppendSnapshot(nil, snap)); err != nil || !reflect.DeepEqual(got, snap) {
		t.Fatalf("snapshot: %+v, %v", got, err)
	}
	m := &CloneMarker{CloneID: testID, Clone: "vm2", Snapshot: "s1"}
	if got, err := DecodeCloneMarker(AppendCloneMarker(nil, m)); err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("clone marker: %+v, %v", got, err)
	}
	l := testLeaf()
	lb, lcrc := AppendLeaf(nil, l)
	if got, err := DecodeLeaf(lb, 10); err != nil || !reflect.DeepEqual(got, l) {
		t.Fatalf("leaf: %+v, %v", got, err)
	}
	if p, _ := DecodePageHeader(lb); p.CRC != lcrc {
		t.Fatalf("leaf crc %x, header says %x", lcrc, p.CRC)
	}
	n := testInterior()
	nb, _ := AppendInterior(nil, n)
	if got, err := DecodeInterior(nb, 8); err != nil || !reflect.DeepEqual(got, n) {
		t.Fatalf("interior: %+v, %v", got, err)
	}
	h, payload := testRecord()
	hb := encodeRecord(h)
	if l, err := PeekRecordHeaderLen(hb); err != nil || l != 512 {
		t.Fatalf("peek: %d, %v", l, err)
	}
	gh, err := DecodeRecordHeader(hb, 512)
	if err != nil || !reflect.DeepEqual(gh, h) {
		t.Fatalf("record: %+v, %v", gh, err)
	}
	if err := CheckPayload(gh, payload); err != nil {
		t.Fatal(err)
	}
	payload[5] ^= 1
	if err := CheckPayload(gh, payload); !errors.Is(err, blockdev.ErrCorrupt) {
		t.Fatalf("flipped payload: %v", err)
	}
}

// mutate returns a copy of b with f applied.
func mutate(b []byte, f func([]byte) []byte) []byte { return f(bytes.Clone(b)) }

func TestCorrupt(t *testing.T) {
	sb := AppendSuperblock(nil, testSuperblock())
	ck := AppendCheckpoint(nil, testCheckpoint())
	leaf, _ := AppendLeaf(nil, testLeaf())
	in, _ := AppendInterior(nil, testInterior())
	rh, _ := testRecord()
	rec := encodeRecord(rh)
	flip := func(i int) func([]byte) []byte { return func(b []byte) []byte { b[i] ^= 0x40; return b } }
	trunc := func(n int) func([]byte) []byte { return func(b []byte) []byte { return b[:len(b)-n] } }
	// resum fixes the trailing CRC of a framed object after a field edit,
	// so that the semantic checks (not the checksum) must catch it.
	resum := func(f func([]byte) []byte) func([]byte) []byte {
		return func(b []byte) []byte {
			b = f(b)
			le.PutUint32(b[len(b)-4:], Checksum(b[:len(b)-4]))
			return b
		}
	}
	resumPage := func(f func([]byte) []byte) func([]byte) []byte {
		return func(b []byte) []byte {
			b = f(b)
			le.PutUint32(b[20:], 0)
			le.PutUint32(b[20:], Checksum(b))
			return b
		}
	}
	set := func(off int, v byte) func([]byte) []byte { return func(b []byte) []byte { b[off] = v; return b } }
	tests := []struct {
		name    string
		in      []byte
		decode  func([]byte) error
		version bool
		reason  string
	}{
		{"sb/magic", mutate(sb, flip(0)), decSB, false, "bad magic"},
		{"sb/version", mutate(sb, set(8, 2)), decSB, true, ""},
		{"sb/crc", mutate(sb, flip(20)), decSB, false, "checksum"},
		{"sb/trunc", mutate(sb, trunc(1)), decSB, false, "length"},
		{"sb/blocksize", mutate(sb, resum(set(41, 3))), decSB, false, "block size"},
		{"sb/name", mutate(sb, resum(set(65, '/'))), decSB, false, "name"},
		{"sb/ancestors", mutate(sb, resum(set(54, 200))), decSB, false, "ancestors"},
		{"ck/version", mutate(ck, set(8, 9)), decCK, true, ""},
		{"ck/height", mutate(ck, resum(set(64, 0))), decCK, false, "height"},
		{"ck/replay", mutate(ck, resum(set(48, 0x30))), decCK, false, "replay"},
		{"ck/rows", mutate(ck, resum(set(112, 0xff))), decCK, false, "row count"},
		{"ck/rowseq", mutate(ck, resum(set(120, 0))), decCK, false, "increasing"},
		{"ck/crc", mutate(ck, flip(40)), decCK, false, "checksum"},
		{"leaf/crc", mutate(leaf, flip(30)), decLeaf, false, "checksum"},
		{"leaf/overlap", mutate(leaf, resumPage(set(24+24, 4))), decLeaf, false, "overlap"},
		{"leaf/beyond", mutate(leaf, resumPage(set(24+24+5, 0xff))), decLeaf, false, "leave the leaf"},
		{"leaf/count", mutate(leaf, resumPage(set(16, 3))), decLeaf, false, "count"},
		{"leaf/kind", mutate(leaf, resumPage(set(4, 7))), decLeaf, false, "kind"},
		{"interior/slot", mutate(in, resumPage(set(24+1, 0xff))), decInterior, false, "slot"},
		{"interior/level", mutate(in, resumPage(set(5, 0))), decInterior, false, "level"},
		{"interior/emptyref", mutate(in, resumPage(func(b []byte) []byte { clear(b[28:52]); return b })), decInterior, false, "empty"},
		{"record/magic", mutate(rec, flip(1)), decRec, false, "magic"},
		{"record/version", mutate(rec, set(8, 3)), decRec, true, ""},
		{"record/hdrlen", mutate(rec, set(12, 7)), decRec, false, "header length"},
		{"record/crc", mutate(rec, flip(70)), decRec, false, "checksum"},
		{"record/count", mutate(rec, set(44, 200)), decRec, false, "entry count"},
		{"record/kind", mutate(rec, resumRec(set(64, 9))), decRec, false, "unknown kind"},
		{"record/misplaced", mutate(rec, resumRec(set(64, byte(EntryMove)))), decRec, false, "in a data record"},
		{"record/payload", mutate(rec, resumRec(set(49, 8))), decRec, false, "payload"},
		{"record/zero", mutate(rec, resumRec(func(b []byte) []byte { clear(b[68:72]); return b })), decRec, false, "zero count"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.decode(tc.in)
			if tc.version {
				if !errors.Is(err, ErrUnsupportedVersion) {
					t.Fatalf("got %v, want ErrUnsupportedVersion", err)
				}
				return
			}
			if !errors.Is(err, blockdev.ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("error %q does not say %q", err, tc.reason)
			}
		})
	}
}

// resumRec recomputes a record header's checksum after an edit.
func resumRec(f func([]byte) []byte) func([]byte) []byte {
	return func(b []byte) []byte {
		b = f(b)
		n := int(le.Uint32(b[44:]))
		if RecordFixedLen+n*EntryLen <= len(b) {
			SealRecordHeader(b, n)
		}
		return b
	}
}

func decSB(b []byte) error       { _, err := DecodeSuperblock(b); return err }
func decCK(b []byte) error       { _, err := DecodeCheckpoint(b); return err }
func decLeaf(b []byte) error     { _, err := DecodeLeaf(b, 10); return err }
func decInterior(b []byte) error { _, err := DecodeInterior(b, 8); return err }
func decRec(b []byte) error      { _, err := DecodeRecordHeader(b, 512); return err }

func TestNames(t *testing.T) {
	for _, ok := range []string{"a", "vm-1", "VM_2.img", "0", strings.Repeat("x", 64)} {
		if err := ValidName(ok); err != nil {
			t.Errorf("ValidName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".hidden", "-x", "a/b", "a b", "é", strings.Repeat("x", 65), "a\x00"} {
		if err := ValidName(bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidName(%q) = %v, want ErrInvalidName", bad, err)
		}
	}
	if got := SegmentName("v", 0x1f); got != "v/seg/000000000000001f" {
		t.Fatalf("SegmentName = %q", got)
	}
	if n, ok := ParseNumbered(SegmentPrefix("v"), "v/seg/000000000000001f"); !ok || n != 0x1f {
		t.Fatalf("ParseNumbered = %d, %v", n, ok)
	}
	for _, bad := range []string{"v/seg/1f", "v/seg/000000000000001F", "w/seg/000000000000001f", "v/seg/000000000000001g"} {
		if _, ok := ParseNumbered(SegmentPrefix("v"), bad); ok {
			t.Errorf("ParseNumbered(%q) accepted", bad)
		}
	}
}
