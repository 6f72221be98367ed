package cache

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/lunway/lunway/backend"
)

var recordTests = []struct {
	name     string
	seq      uint64
	kind     recordKind
	obj      string
	off      int64
	unixNano int64
	data     string
	golden   string // hex of the whole record
}{
	{"put", 1, kindPut, "a", 0, 1, "xyz",
		"4c5743312d5d9d58" + "0100000000000000" + "0100" + "0100" + "03000000" + "0000000000000000" + "0100000000000000" +
			"61" + "78797a" + "0000000000000000"[:8]},
	{"delete", 2, kindDelete, "vol/seg/00000001", 0, 0x1122334455667788, "",
		"4c574331ca19af1b" + "0200000000000000" + "0200" + "1000" + "00000000" + "0000000000000000" + "8877665544332211" +
			hex.EncodeToString([]byte("vol/seg/00000001"))},
	{"writeat", 7, kindWriteAt, "s", 4096, 5, "\x00\x01",
		"4c5743318ea3c28f" + "0700000000000000" + "0300" + "0100" + "02000000" + "0010000000000000" + "0500000000000000" +
			"73" + "0001" + "0000000000"},
}

func encode(seq uint64, kind recordKind, name string, off, unixNano int64, data []byte) []byte {
	b, pad := appendRecordHeader(nil, seq, kind, name, off, unixNano, data)
	b = append(b, data...)
	return append(b, make([]byte, pad)...)
}

func TestRecordGolden(t *testing.T) {
	for _, tt := range recordTests {
		t.Run(tt.name, func(t *testing.T) {
			b := encode(tt.seq, tt.kind, tt.obj, tt.off, tt.unixNano, []byte(tt.data))
			if got := hex.EncodeToString(b); got != tt.golden {
				t.Errorf("encoded\n got %s\nwant %s", got, tt.golden)
			}
			if len(b)%8 != 0 || int64(len(b)) != recordLen(len(tt.obj), int64(len(tt.data))) {
				t.Errorf("length %d, recordLen %d", len(b), recordLen(len(tt.obj), int64(len(tt.data))))
			}
			h, name, data, n, err := decodeRecord(b)
			if err != nil {
				t.Fatal(err)
			}
			if h.seq != tt.seq || h.kind != tt.kind || name != tt.obj || h.off != tt.off || h.unixNano != tt.unixNano ||
				string(data) != tt.data || n != int64(len(b)) {
				t.Errorf("decoded %+v %q %q %d", h, name, data, n)
			}
			// Every truncation fails, and every single-bit flip fails (or,
			// in the padding and unchecked bits, still decodes the same).
			for i := 0; i < len(b); i++ {
				if _, _, _, _, err := decodeRecord(b[:i]); !errors.Is(err, backend.ErrCorrupt) {
					t.Fatalf("truncated to %d: %v", i, err)
				}
				for bit := 0; bit < 8; bit++ {
					c := bytes.Clone(b)
					c[i] ^= 1 << bit
					if _, _, _, _, err := decodeRecord(c); err == nil {
						t.Fatalf("bit %d of byte %d flipped: decoded", bit, i)
					} else if !errors.Is(err, backend.ErrCorrupt) {
						t.Fatalf("bit %d of byte %d flipped: %v does not wrap ErrCorrupt", bit, i, err)
					}
				}
			}
		})
	}
}

func TestRecordHeaderRejects(t *testing.T) {
	good := encode(3, kindWriteAt, "obj", 10, 1, []byte("data"))
	for _, tc := range []struct {
		name string
		mod  func(b []byte)
		want string
	}{
		{"magic", func(b []byte) { b[0] = 'X' }, "magic"},
		{"seq0", func(b []byte) { clear(b[8:16]) }, "sequence"},
		{"kind", func(b []byte) { b[16] = 9 }, "kind"},
		{"flags", func(b []byte) { b[17] = 1 }, "flags"},
		{"name0", func(b []byte) { b[18], b[19] = 0, 0 }, "name length"},
		{"name-long", func(b []byte) { b[18], b[19] = 0xff, 0xff }, "name length"},
		{"data-huge", func(b []byte) { b[20], b[21], b[22], b[23] = 0xff, 0xff, 0xff, 0xff }, "data length"},
		{"delete-data", func(b []byte) { b[16] = byte(kindDelete) }, "delete with"},
		{"put-offset", func(b []byte) { b[16] = byte(kindPut) }, "offset"},
		{"negative-offset", func(b []byte) { b[31] = 0x80 }, "offset"},
	} {
		b := bytes.Clone(good)
		tc.mod(b)
		_, err := parseRecordHeader(b)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, backend.ErrCorrupt) {
			t.Errorf("%s: %v; want an error about %q", tc.name, err, tc.want)
		}
	}
	// A valid header with an invalid object name fails the full check.
	b := encode(1, kindPut, "a b", 0, 1, nil)
	if _, _, _, _, err := decodeRecord(b); err == nil || !errors.Is(err, backend.ErrInvalidName) {
		t.Errorf("record with name %q: %v", "a b", err)
	}
}

// FuzzRecord: decoding never panics, and what decodes re-encodes to the
// same bytes.
func FuzzRecord(f *testing.F) {
	for _, tt := range recordTests {
		b, _ := hex.DecodeString(tt.golden)
		f.Add(b)
	}
	f.Add(encode(1<<40, kindWriteAt, strings.Repeat("n", backend.MaxNameLen), 1<<30, -1, bytes.Repeat([]byte{7}, 100)))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, name, data, n, err := decodeRecord(b)
		if err != nil {
			if !errors.Is(err, backend.ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		again := encode(h.seq, h.kind, name, h.off, h.unixNano, data)
		if !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoded record differs:\n%x\n%x", again, b[:n])
		}
	})
}
