package iscsi

import (
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/target/initiator"
)

// h decodes hex with spaces (golden values are written as the wire shows them).
func h(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

var capacity16Golden = []struct {
	name string
	in   string
	want capacity
	err  error
}{
	{"lunway thin 1 GiB 512/4096", "00000000001fffff 00000200 00 03 c000 0000000000000000000000000000",
		capacity{blocks: 1 << 21, blockSize: 512, physExp: 3, lbpme: true, lbprz: true}, nil},
	{"thick 4Kn", "00000000000003ff 00001000 00 00 0000", capacity{blocks: 1024, blockSize: 4096}, nil},
	{"LBPME without LBPRZ", "0000000000000fff 00000200 00 00 8000", capacity{blocks: 4096, blockSize: 512, lbpme: true}, nil},
	{"absurd exponent ignored", "0000000000000fff 00000200 00 0f 0000", capacity{blocks: 4096, blockSize: 512}, nil},
	{"520-byte blocks", "0000000000000fff 00000208 00 00 0000", capacity{}, ErrUnsupported},
	{"overflowing size", "ffffffffffffffff 00000200 00 00 0000", capacity{}, ErrTarget},
	{"just overflowing", "0040000000000000 00000200 00 00 0000", capacity{}, ErrTarget},
	{"short", "00000000001fffff 00000200", capacity{}, ErrTarget},
}

func TestParseCapacity16(t *testing.T) {
	for _, tc := range capacity16Golden {
		got, err := parseCapacity16(h(tc.in))
		if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v, %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

func TestParseCapacity10(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want capacity
		err  error
	}{
		{"000fffff 00000200", capacity{blocks: 1 << 20, blockSize: 512}, nil},
		{"ffffffff 00000200", capacity{}, ErrTarget},
		{"000fffff 00000400", capacity{}, ErrUnsupported},
		{"000fff", capacity{}, ErrTarget},
	} {
		got, err := parseCapacity10(h(tc.in))
		if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

var blockLimitsGolden = []struct {
	name string
	in   string
	want limits
	err  error
}{
	// Lunway: WSNZ, CAW 64, granularity 8, max 65536 blocks (32 MiB at
	// 512), optimal 2048, unmap 1048576 LBAs in 256 descriptors, granule 8,
	// UGAVALID, write same 1048576.
	{"lunway", "00b0003c 01 40 0008 00010000 00000800 00010000 00100000 00000100 00000008 80000000 0000000000100000 0000000000000000000000000000000000000000",
		limits{maxTransfer: 65536, optimalTransfer: 2048, maxUnmapLBAs: 1 << 20, maxUnmapDescs: 256, unmapGranule: 8, maxWriteSame: 1 << 20}, nil},
	{"old 0x10-byte page", "00b00010 00 00 0000 00000400 00000080 00000000",
		limits{maxTransfer: 1024, optimalTransfer: 128}, nil},
	{"page length beyond data", "00b0003c 00 00 0000 00000400", limits{maxTransfer: 1024}, nil},
	{"wrong page", "00b10010 00000000000000000000000000000000", limits{}, ErrTarget},
	{"short", "00b0", limits{}, ErrTarget},
}

func TestParseBlockLimits(t *testing.T) {
	for _, tc := range blockLimitsGolden {
		got, err := parseBlockLimits(h(tc.in))
		if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v, %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

var provisioningGolden = []struct {
	name string
	in   string
	want provisioning
	err  error
}{
	{"lunway", "00b20004 00 e4 02 00", provisioning{lbpu: true, lbpws: true, lbprz: true, thin: true}, nil},
	{"unmap without zeros", "00b20004 00 80 01 00", provisioning{lbpu: true}, nil},
	{"SBC-4 provisioning pattern", "00b20004 00 c8 02 00", provisioning{lbpu: true, lbpws: true, thin: true}, nil},
	{"two bytes", "00b20002 00 40", provisioning{lbpws: true}, nil},
	{"too short", "00b20001 00", provisioning{}, ErrTarget},
	{"wrong page", "00b00004 00e40200", provisioning{}, ErrTarget},
}

func TestParseProvisioning(t *testing.T) {
	for _, tc := range provisioningGolden {
		got, err := parseProvisioning(h(tc.in))
		if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v, %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

func TestParseSmall(t *testing.T) {
	pages, err := parseSupportedVPD(h("00000006 00 80 83 b0 b1 b2"))
	if err != nil || !pages[0xb0] || !pages[0xb2] || pages[0xb3] || len(pages) != 6 {
		t.Errorf("supported pages: %v %v", pages, err)
	}
	if _, err := parseSupportedVPD(h("0080")); !errors.Is(err, ErrTarget) {
		t.Errorf("short page list: %v", err)
	}
	for _, tc := range []struct {
		in   string
		want inquiry
		ok   bool
	}{
		{"00 00 05 32", inquiry{}, true},
		{"7f", inquiry{qualifier: 3, deviceType: 0x1f}, true},
		{"05", inquiry{deviceType: 5}, true},
		{"", inquiry{}, false},
	} {
		got, err := parseInquiry(h(tc.in))
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("inquiry %q: %+v %v", tc.in, got, err)
		}
	}
	for _, tc := range []struct {
		in     string
		wp, ok bool
	}{
		{"17 00 10 08", false, true},
		{"17 00 90 08", true, true},
		{"17 00 80", false, false},
	} {
		wp, err := parseModeSense6WP(h(tc.in))
		if wp != tc.wp || (err == nil) != tc.ok {
			t.Errorf("mode sense %q: %v %v", tc.in, wp, err)
		}
	}
	for _, tc := range []struct {
		in            string
		supported, ok bool
	}{
		{"00 03 0010 93f9ffffffffffffffffffffffff3f00", true, true},
		{"00 05 0010", true, true},
		{"00 01 0000", false, true},
		{"00 03 00", false, false},
	} {
		s, err := parseOneCommand(h(tc.in))
		if s != tc.supported || (err == nil) != tc.ok {
			t.Errorf("one command %q: %v %v", tc.in, s, err)
		}
	}
}

var lbaStatusGolden = []struct {
	name         string
	in           string
	start, count uint64
	want         []lbaStatus
	err          error
}{
	{"one mapped", "00000014 00000000 0000000000000000 00000800 00 000000", 0, 2048,
		[]lbaStatus{{0, 2048, 0}}, nil},
	{"mapped then deallocated, clipped", "00000024 00000000 0000000000000010 00000010 00 000000 0000000000000020 00001000 01 000000", 16, 100,
		[]lbaStatus{{16, 16, 0}, {32, 84, 1}}, nil},
	{"first starts before the query", "00000014 00000000 0000000000000000 00000100 01 000000", 8, 16,
		[]lbaStatus{{8, 16, 1}}, nil},
	{"adjacent of one state merge", "00000024 00000000 0000000000000000 00000008 02 000000 0000000000000008 00000008 02 000000", 0, 64,
		[]lbaStatus{{0, 16, 2}}, nil},
	{"gap ends the list", "00000024 00000000 0000000000000000 00000008 00 000000 0000000000000010 00000008 01 000000", 0, 64,
		[]lbaStatus{{0, 8, 0}}, nil},
	{"unknown state is mapped", "00000014 00000000 0000000000000000 00000008 07 000000", 0, 8,
		[]lbaStatus{{0, 8, 0}}, nil},
	{"length beyond the data", "00000094 00000000 0000000000000000 00000008 01 000000", 0, 8,
		[]lbaStatus{{0, 8, 1}}, nil},
	{"first does not contain start", "00000014 00000000 0000000000000010 00000008 00 000000", 0, 64, nil, ErrTarget},
	{"zero-length first", "00000014 00000000 0000000000000000 00000000 00 000000", 0, 64, nil, ErrTarget},
	{"no descriptor", "00000004 00000000", 0, 64, nil, ErrTarget},
	{"overflowing descriptor", "00000014 00000000 fffffffffffffff0 ffffffff 00 000000", 0xfffffffffffffff8, 4, nil, ErrTarget},
	{"short", "000000", 0, 8, nil, ErrTarget},
}

func TestParseLBAStatus(t *testing.T) {
	for _, tc := range lbaStatusGolden {
		got, err := parseLBAStatus(h(tc.in), tc.start, tc.count)
		if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %+v, %v; want %+v, %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

var urlGolden = []struct {
	in   string
	want Target
	err  bool
}{
	{"iscsi://127.0.0.1/iqn.2026-11.dev.lunway:default/0", Target{Addr: "127.0.0.1:3260", IQN: "iqn.2026-11.dev.lunway:default"}, false},
	{"iscsi://host:3261/iqn.x:y/12", Target{Addr: "host:3261", IQN: "iqn.x:y", LUN: 12}, false},
	{"iscsi://[::1]:3262/iqn.x:y/1", Target{Addr: "[::1]:3262", IQN: "iqn.x:y", LUN: 1}, false},
	{"iscsi://bob%s3cr%40t@h/iqn.x:y/0", Target{Addr: "h:3260", IQN: "iqn.x:y", User: "bob", Secret: "s3cr@t"}, false},
	{"iscsi://bob:pw@h/iqn.x:y/0", Target{Addr: "h:3260", IQN: "iqn.x:y", User: "bob", Secret: "pw"}, false},
	{"iscsi://h/iqn.x:y/16383", Target{Addr: "h:3260", IQN: "iqn.x:y", LUN: 16383}, false},
	{"iscsi://h/iqn.x:y/16384", Target{}, true},
	{"iscsi://h/iqn.x:y", Target{}, true},
	{"iscsi://h/iqn.x:y/0/extra", Target{}, true},
	{"iscsi://h/iqn.x:y/-1", Target{}, true},
	{"iscsi://h:0/iqn.x:y/0", Target{}, true},
	{"iscsi://h:99999/iqn.x:y/0", Target{}, true},
	{"iscsi:///iqn.x:y/0", Target{}, true},
	{"iscsi://h/iqn.x:y/0?x=1", Target{}, true},
	{"iscsi://%zz@h/iqn.x:y/0", Target{}, true},
	{"iscsi://h/%01/0", Target{}, true},                                      // a control character in the target name
	{"iscsi://h/iqn.x%20y/0", Target{}, true},                                // a space
	{"iscsi://h/iqn.x%3Fy/0", Target{Addr: "h:3260", IQN: "iqn.x?y"}, false}, // escaped again by String
	{"http://h/iqn.x:y/0", Target{}, true},
	{"volume:/x/y", Target{}, true},
	{"", Target{}, true},
}

func TestParseURL(t *testing.T) {
	for _, tc := range urlGolden {
		got, err := ParseURL(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseURL(%q) = %+v, %v; want %+v (error %v)", tc.in, got, err, tc.want, tc.err)
		}
		if err != nil && !errors.Is(err, ErrURL) {
			t.Errorf("ParseURL(%q): %v does not wrap ErrURL", tc.in, err)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr") {
			t.Errorf("ParseURL(%q): error leaks the secret: %v", tc.in, err)
		}
	}
	long := "iscsi://h/" + strings.Repeat("a", MaxURLLen) + "/0"
	if _, err := ParseURL(long); !errors.Is(err, ErrURL) {
		t.Errorf("long URL: %v", err)
	}
	if got := redact("iscsi://bob%s3cr3t@h/iqn.x:y/0"); strings.Contains(got, "s3cr3t") {
		t.Errorf("redact: %q", got)
	}
}

func TestClassify(t *testing.T) {
	sense := func(k, asc, ascq uint8) initiator.Sense { return initiator.Sense{Key: k, ASC: asc, ASCQ: ascq} }
	for _, tc := range []struct {
		status uint8
		sense  initiator.Sense
		class  class
		err    error
	}{
		{0x00, initiator.Sense{}, classDone, nil},
		{0x08, initiator.Sense{}, classBusy, blockdev.ErrUnavailable},
		{0x28, initiator.Sense{}, classBusy, blockdev.ErrUnavailable},
		{0x18, initiator.Sense{}, classFail, blockdev.ErrInUse},
		{0x40, initiator.Sense{}, classTransient, blockdev.ErrUnavailable},
		{0x02, sense(6, 0x29, 0), classUA, blockdev.ErrUnavailable},
		{0x02, sense(2, 0x04, 0x01), classBusy, blockdev.ErrUnavailable},
		{0x02, sense(2, 0x04, 0x00), classBusy, blockdev.ErrUnavailable},
		{0x02, sense(2, 0x04, 0x03), classFail, blockdev.ErrUnavailable},
		{0x02, sense(2, 0x3a, 0x00), classFail, blockdev.ErrUnavailable},
		{0x02, sense(0xb, 0x47, 0x00), classTransient, blockdev.ErrUnavailable},
		{0x02, sense(5, 0x21, 0x00), classFail, blockdev.ErrOutOfRange},
		{0x02, sense(5, 0x20, 0x00), classFail, blockdev.ErrNotSupported},
		{0x02, sense(5, 0x24, 0x00), classFail, blockdev.ErrNotSupported},
		{0x02, sense(5, 0x25, 0x00), classFail, ErrNoLUN},
		{0x02, sense(7, 0x27, 0x00), classFail, blockdev.ErrReadOnly},
		{0x02, sense(7, 0x27, 0x07), classFail, blockdev.ErrNoSpace},
		{0x02, sense(3, 0x11, 0x00), classFail, blockdev.ErrCorrupt},
		{0x02, sense(4, 0x44, 0x00), classFail, nil},
		{0x22, initiator.Sense{}, classFail, nil},
	} {
		name := fmt.Sprintf("status %#x %v", tc.status, tc.sense)
		c, err := classify(tc.status, tc.sense)
		if c != tc.class {
			t.Errorf("%s: class %d, want %d", name, c, tc.class)
		}
		if tc.err != nil && !errors.Is(err, tc.err) {
			t.Errorf("%s: error %v, want %v", name, err, tc.err)
		}
		var se *initiator.StatusError
		if c != classDone && !errors.As(err, &se) {
			t.Errorf("%s: error %v does not carry the *StatusError", name, err)
		}
		if c == classDone && err != nil {
			t.Errorf("%s: GOOD with error %v", name, err)
		}
	}
}
