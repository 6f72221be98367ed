package iscsi

import (
	"encoding/binary"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary target answers to every decoder: none may
// panic, and the LBA status decoder's result must keep its promises
// (starts at the query, contiguous, within it, states 0..2).
func FuzzParse(f *testing.F) {
	for _, tc := range capacity16Golden {
		f.Add(h(tc.in), uint64(0), uint64(8))
	}
	for _, tc := range blockLimitsGolden {
		f.Add(h(tc.in), uint64(0), uint64(8))
	}
	for _, tc := range provisioningGolden {
		f.Add(h(tc.in), uint64(0), uint64(8))
	}
	for _, tc := range lbaStatusGolden {
		f.Add(h(tc.in), tc.start, tc.count)
	}
	f.Fuzz(func(t *testing.T, b []byte, start, count uint64) {
		parseCapacity16(b)
		parseCapacity10(b)
		parseBlockLimits(b)
		parseProvisioning(b)
		parseSupportedVPD(b)
		parseInquiry(b)
		parseModeSense6WP(b)
		parseOneCommand(b)
		if c, err := parseCapacity16(b); err == nil && (c.blocks == 0 || int64(c.blocks)*int64(c.blockSize) <= 0) {
			t.Fatalf("capacity %+v", c)
		}
		if count == 0 {
			return
		}
		st, err := parseLBAStatus(b, start, count)
		if err != nil {
			return
		}
		if len(st) == 0 || len(st) > maxStatusDescriptors {
			t.Fatalf("%d extents", len(st))
		}
		next := start
		for _, s := range st {
			if s.lba != next || s.blocks == 0 || s.state > 2 {
				t.Fatalf("extent %+v at %d in %+v", s, next, st)
			}
			next += s.blocks
			if next < s.lba || next-start > count {
				t.Fatalf("extents %+v beyond [%d, +%d)", st, start, count)
			}
		}
	})
}

// FuzzParseURL: ParseURL never panics; what it accepts round-trips
// through String (which drops the secret) and never leaks the secret in
// an error.
func FuzzParseURL(f *testing.F) {
	for _, tc := range urlGolden {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseURL(s)
		if err != nil {
			return
		}
		if tg.Addr == "" || tg.IQN == "" || tg.LUN > 16383 {
			t.Fatalf("accepted %q as %+v", s, tg)
		}
		back, err := ParseURL(tg.String())
		if err != nil {
			t.Fatalf("String() %q of %q does not parse: %v", tg.String(), s, err)
		}
		tg.Secret = ""
		if back != tg {
			t.Fatalf("round trip of %q: %+v, want %+v", s, back, tg)
		}
	})
}

// TestFuzzSeedsCover checks the seed tables reach the decoders' main
// paths (a fuzzer seeded with only failures explores little).
func TestFuzzSeedsCover(t *testing.T) {
	ok := 0
	for _, tc := range lbaStatusGolden {
		if tc.err == nil {
			ok++
		}
	}
	if ok < 5 || binary.BigEndian.Uint32(h(lbaStatusGolden[0].in)) == 0 || !strings.HasPrefix(urlGolden[0].in, "iscsi://") {
		t.Fatal("seed tables lost their valid cases")
	}
}
