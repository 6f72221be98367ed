package pdu

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// RFC 7143 appendix B.4 CRC examples, as the bytes appear on the wire.
func TestCRC32CVectors(t *testing.T) {
	inc := make([]byte, 32)
	dec := make([]byte, 32)
	for i := range inc {
		inc[i] = byte(i)
		dec[i] = byte(31 - i)
	}
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"zeros", make([]byte, 32), "aa36918a"},
		{"ones", bytes.Repeat([]byte{0xff}, 32), "43aba862"},
		{"incrementing", inc, "4e79dd46"},
		{"decrementing", dec, "5cdb3f11"},
	}
	for _, tc := range tests {
		got := AppendDigest(nil, CRC32C(tc.in))
		if string(got) != string(mustHex(t, tc.want)) {
			t.Errorf("%s: got %x want %s", tc.name, got, tc.want)
		}
	}
}

func nopOut(data []byte) (BHS, []byte) {
	var b BHS
	(&NOPOut{Immediate: true, ITT: 1, TTT: ReservedTag, CmdSN: 1}).Encode(&b)
	return b, data
}

func TestAppendPDUGolden(t *testing.T) {
	b, data := nopOut([]byte("ping!"))
	got := AppendPDU(nil, &b, nil, data, true, true)
	want := mustHex(t, `40 80 0000 00 000005 0000000000000000 00000001 ffffffff 00000001 00000000
		00000000 00000000 00000000 00000000`)
	hd := AppendDigest(nil, CRC32C(want))
	want = append(want, hd...)
	want = append(want, "ping!\x00\x00\x00"...)
	want = AppendDigest(want, CRC32C([]byte("ping!\x00\x00\x00")))
	if !bytes.Equal(got, want) {
		t.Fatalf("got  %x\nwant %x", got, want)
	}
}

func TestReaderRoundTrip(t *testing.T) {
	for _, digests := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
		for _, n := range []int{0, 1, 3, 4, 5, 4096, 70000} {
			data := bytes.Repeat([]byte{0xa5}, n)
			b, _ := nopOut(data)
			var ahs []byte
			if n == 5 {
				ahs = AppendExtendedCDB(nil, []byte{1, 2, 3, 4})
			}
			wire := AppendPDU(nil, &b, ahs, data, digests[0], digests[1])
			wire = AppendPDU(wire, &b, nil, nil, digests[0], digests[1])
			r := NewReader(bufio.NewReader(bytes.NewReader(wire)), Limits{HeaderDigest: digests[0], DataDigest: digests[1]})
			p, err := r.ReadPDU()
			if err != nil {
				t.Fatalf("digests %v n=%d: %v", digests, n, err)
			}
			if !bytes.Equal(p.Data, data) || p.BHS.DataSegmentLength() != n || !bytes.Equal(p.AHS, ahs) {
				t.Fatalf("digests %v n=%d: data/ahs mismatch", digests, n)
			}
			if _, err := r.ReadPDU(); err != nil {
				t.Fatalf("second PDU: %v", err)
			}
			if _, err := r.ReadPDU(); err != io.EOF {
				t.Fatalf("at end: %v", err)
			}
		}
	}
}

func TestReaderErrors(t *testing.T) {
	b, data := nopOut([]byte("hello world"))
	good := AppendPDU(nil, &b, nil, data, true, true)
	flip := func(i int) []byte {
		w := append([]byte(nil), good...)
		w[i] ^= 1
		return w
	}
	bigHdr := func() []byte {
		var h BHS
		(&NOPOut{ITT: 1}).Encode(&h)
		return AppendHeader(nil, &h, nil, 1<<20, false)
	}
	tests := []struct {
		name string
		wire []byte
		lim  Limits
		want error
	}{
		{"header digest", flip(3), Limits{HeaderDigest: true, DataDigest: true}, ErrHeaderDigest},
		{"data digest", flip(BHSLen + 4 + 2), Limits{HeaderDigest: true, DataDigest: true}, ErrDataDigest},
		{"truncated header", good[:20], Limits{HeaderDigest: true, DataDigest: true}, ErrTruncated},
		{"truncated digest", good[:50], Limits{HeaderDigest: true, DataDigest: true}, ErrTruncated},
		{"truncated data", good[:60], Limits{HeaderDigest: true, DataDigest: true}, ErrTruncated},
		{"data too large", bigHdr(), Limits{MaxDataSegmentLength: 8192}, ErrTooLarge},
		{"ahs too large", append([]byte{0x40, 0x80, 0, 0, 200}, make([]byte, 43)...), Limits{MaxAHSLength: 64}, ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(tc.wire), tc.lim)
			_, err := r.ReadPDU()
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// A data digest error or an oversized data segment keeps framing: the next
// PDU reads fine.
func TestReaderRecoversFraming(t *testing.T) {
	b, data := nopOut([]byte("hello world"))
	good := AppendPDU(nil, &b, nil, data, false, true)
	bad := append([]byte(nil), good...)
	bad[BHSLen+1] ^= 0xff
	wire := append(bad, good...)
	r := NewReader(bytes.NewReader(wire), Limits{DataDigest: true})
	if _, err := r.ReadPDU(); !errors.Is(err, ErrDataDigest) {
		t.Fatalf("first: %v", err)
	}
	if p, err := r.ReadPDU(); err != nil || string(p.Data) != "hello world" {
		t.Fatalf("second: %v", err)
	}

	big := bytes.Repeat([]byte{1}, 9000)
	b2, _ := nopOut(big)
	wire = AppendPDU(nil, &b2, nil, big, false, false)
	wire = append(wire, AppendPDU(nil, &b, nil, data, false, false)...)
	r = NewReader(bytes.NewReader(wire), Limits{MaxDataSegmentLength: 8192})
	var h BHS
	if _, err := r.ReadHeader(&h); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	if err := r.Discard(); err != nil {
		t.Fatalf("discard: %v", err)
	}
	if p, err := r.ReadPDU(); err != nil || string(p.Data) != "hello world" {
		t.Fatalf("after discard: %v", err)
	}
}

func TestParseAHS(t *testing.T) {
	ext := AppendExtendedCDB(nil, []byte{0xaa, 0xbb, 0xcc, 0xdd, 0xee})
	if want := mustHex(t, "0006 01 00 aabbccddee 000000"); !bytes.Equal(ext, want) {
		t.Fatalf("extended CDB AHS %x want %x", ext, want)
	}
	both := AppendBidiReadLength(append([]byte(nil), ext...), 0x1000)
	tests := []struct {
		name    string
		in      []byte
		wantCDB []byte
		bidi    uint32
		err     error
	}{
		{"empty", nil, nil, 0, nil},
		{"extended CDB", ext, []byte{0xaa, 0xbb, 0xcc, 0xdd, 0xee}, 0, nil},
		{"both", both, []byte{0xaa, 0xbb, 0xcc, 0xdd, 0xee}, 0x1000, nil},
		{"short", []byte{0, 6, 1}, nil, 0, ErrTruncated},
		{"length beyond", []byte{0, 60, 1, 0}, nil, 0, ErrTruncated},
		{"zero length", []byte{0, 0, 1, 0}, nil, 0, ErrTruncated},
		{"unknown type", []byte{0, 1, 9, 0}, nil, 0, ErrInvalidField},
		{"bidi wrong length", []byte{0, 1, 2, 0}, nil, 0, ErrInvalidField},
		{"two CDBs", append(append([]byte(nil), ext...), ext...), nil, 0, ErrInvalidField},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseAHS(tc.in)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v want %v", err, tc.err)
			}
			if err == nil && (!bytes.Equal(a.ExtendedCDB, tc.wantCDB) || a.BidiReadLength != tc.bidi) {
				t.Fatalf("got %+v", a)
			}
		})
	}
}

func FuzzReadPDU(f *testing.F) {
	for _, tc := range bhsGolden {
		f.Add(mustHex(f, tc.hex), false, false)
	}
	b, data := nopOut([]byte("seed"))
	f.Add(AppendPDU(nil, &b, AppendExtendedCDB(nil, []byte{1, 2}), data, true, true), true, true)
	f.Add([]byte(strings.Repeat("\xff", 60)), false, true)
	f.Fuzz(func(t *testing.T, wire []byte, hd, dd bool) {
		r := NewReader(bytes.NewReader(wire), Limits{MaxDataSegmentLength: 1 << 16, HeaderDigest: hd, DataDigest: dd})
		for i := 0; i < 8; i++ {
			var h BHS
			ahs, err := r.ReadHeader(&h)
			if err != nil {
				if errors.Is(err, ErrTooLarge) && r.Pending() > 0 {
					if r.Discard() != nil {
						return
					}
					continue
				}
				return
			}
			if h.TotalAHSLength() != len(ahs) {
				t.Fatalf("AHS length %d vs %d", h.TotalAHSLength(), len(ahs))
			}
			_, _ = ParseAHS(ahs)
			decodeAny(&h)
			if n := r.Pending(); n > 0 {
				if n > 1<<16 {
					t.Fatalf("pending %d beyond cap", n)
				}
				if err := r.ReadData(make([]byte, n)); err != nil && !errors.Is(err, ErrDataDigest) {
					return
				}
			}
		}
	})
}

// decodeAny decodes h with its opcode's type and re-encodes it: decoding
// must not panic and a successful decode must round trip the fields it owns.
func decodeAny(h *BHS) {
	var m message
	switch h.Opcode() {
	case OpNOPOut:
		m = &NOPOut{}
	case OpSCSICommand:
		m = &SCSICommand{}
	case OpTaskMgmtReq:
		m = &TaskMgmtRequest{}
	case OpLoginReq:
		m = &LoginRequest{}
	case OpTextReq:
		m = &TextRequest{}
	case OpDataOut:
		m = &DataOut{}
	case OpLogoutReq:
		m = &LogoutRequest{}
	case OpSNACK:
		m = &SNACK{}
	case OpNOPIn:
		m = &NOPIn{}
	case OpSCSIResponse:
		m = &SCSIResponse{}
	case OpTaskMgmtResp:
		m = &TaskMgmtResponse{}
	case OpLoginResp:
		m = &LoginResponse{}
	case OpTextResp:
		m = &TextResponse{}
	case OpDataIn:
		m = &DataIn{}
	case OpLogoutResp:
		m = &LogoutResponse{}
	case OpR2T:
		m = &R2T{}
	case OpAsyncMessage:
		m = &AsyncMessage{}
	case OpReject:
		m = &Reject{}
	default:
		return
	}
	if m.Decode(h) != nil {
		return
	}
	var b BHS
	m.Encode(&b)
	m2 := m
	if m2.Decode(&b) != nil {
		panic("re-encoded header does not decode")
	}
}
