package pdu

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

var textGolden = []struct {
	name string
	in   string
	want []KV
	err  error
}{
	{"login", "InitiatorName=iqn.2026-01.org.example:host\x00SessionType=Normal\x00",
		[]KV{{"InitiatorName", "iqn.2026-01.org.example:host"}, {"SessionType", "Normal"}}, nil},
	{"empty value", "TargetAlias=\x00", []KV{{"TargetAlias", ""}}, nil},
	{"value with equals", "X-a=b=c\x00", []KV{{"X-a", "b=c"}}, nil},
	{"padding NULs", "A=1\x00\x00\x00", []KV{{"A", "1"}}, nil},
	{"empty", "", nil, nil},
	{"no terminator", "A=1", nil, ErrKeyFormat},
	{"no equals", "A\x00", nil, ErrKeyFormat},
	{"empty key", "=1\x00", nil, ErrKeyFormat},
	{"bad key char", "A B=1\x00", nil, ErrKeyFormat},
	{"long key", strings.Repeat("k", 64) + "=1\x00", nil, ErrKeyFormat},
	{"max key", strings.Repeat("k", 63) + "=1\x00", []KV{{strings.Repeat("k", 63), "1"}}, nil},
	{"long value", "A=" + strings.Repeat("v", MaxValueLength+1) + "\x00", nil, ErrTooLarge},
	{"duplicate", "A=1\x00B=2\x00A=3\x00", nil, ErrKeyDuplicate},
}

func TestParseText(t *testing.T) {
	for _, tc := range textGolden {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseText([]byte(tc.in))
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %q want %q", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %q want %q", got, tc.want)
				}
			}
			enc := AppendText(nil, got...)
			again, err := ParseText(enc)
			if err != nil || len(again) != len(got) {
				t.Fatalf("round trip: %v", err)
			}
		})
	}
}

func TestAppendTextGolden(t *testing.T) {
	got := AppendText(nil, KV{"HeaderDigest", "CRC32C,None"}, KV{"MaxBurstLength", "262144"})
	if want := "HeaderDigest=CRC32C,None\x00MaxBurstLength=262144\x00"; string(got) != want {
		t.Fatalf("got %q", got)
	}
}

func TestTextAssembler(t *testing.T) {
	a := TextAssembler{Max: 16}
	if _, done, err := a.Add([]byte("A=12"), true); done || err != nil {
		t.Fatal(done, err)
	}
	text, done, err := a.Add([]byte("34\x00"), false)
	if !done || err != nil || string(text) != "A=1234\x00" {
		t.Fatalf("%q %v %v", text, done, err)
	}
	if _, _, err := a.Add(bytes.Repeat([]byte{'x'}, 17), true); !errors.Is(err, ErrTooLarge) {
		t.Fatal(err)
	}
	if a.Pending() {
		t.Fatal("pending after overflow")
	}
}

func TestValues(t *testing.T) {
	nums := []struct {
		in   string
		want uint64
		err  error
	}{
		{"0", 0, nil}, {"262144", 262144, nil}, {"0x40000", 0x40000, nil}, {"0X1f", 31, nil},
		{"", 0, ErrValueFormat}, {"-1", 0, ErrValueFormat}, {"+1", 0, ErrValueFormat},
		{"0x", 0, ErrValueFormat}, {"12a", 0, ErrValueFormat}, {"99999999999999999999999", 0, ErrValueFormat},
		{"18446744073709551616", 0, ErrValueFormat},
	}
	for _, tc := range nums {
		got, err := ParseNumber(tc.in)
		if !errors.Is(err, tc.err) || err == nil && got != tc.want {
			t.Errorf("ParseNumber(%q) = %d, %v", tc.in, got, err)
		}
	}
	if _, err := ParseNumberRange("511", 512, 1<<24-1); !errors.Is(err, ErrValueRange) {
		t.Error("range", err)
	}
	if b, err := ParseBool("Yes"); !b || err != nil {
		t.Error("Yes")
	}
	if _, err := ParseBool("yes"); !errors.Is(err, ErrValueFormat) {
		t.Error("yes")
	}
	if _, err := SplitList("CRC32C,,None"); !errors.Is(err, ErrValueFormat) {
		t.Error("empty item")
	}
	bins := []struct {
		in   string
		want string
		err  error
	}{
		{"0x0a0B", "\x0a\x0b", nil}, {"0xabc", "\x0a\xbc", nil}, {"0bAQID", "\x01\x02\x03", nil},
		{"0x", "", ErrValueFormat}, {"abc", "", ErrValueFormat}, {"0xzz", "", ErrValueFormat}, {"0b!!", "", ErrValueFormat},
	}
	for _, tc := range bins {
		got, err := ParseBinary(tc.in)
		if !errors.Is(err, tc.err) || err == nil && string(got) != tc.want {
			t.Errorf("ParseBinary(%q) = %x, %v", tc.in, got, err)
		}
	}
	if FormatHex([]byte{1, 0xab}) != "0x01ab" {
		t.Error(FormatHex([]byte{1, 0xab}))
	}
}

func TestAnswer(t *testing.T) {
	tests := []struct {
		key, offered, local, want string
		fails                     bool
	}{
		{"MaxBurstLength", "1048576", "262144", "262144", false},
		{"MaxBurstLength", "4096", "262144", "4096", false},
		{"MaxBurstLength", "100", "262144", RejectValue, true},
		{"MaxBurstLength", "16777216", "262144", RejectValue, true},
		{"FirstBurstLength", "0x10000", "65536", "65536", false},
		{"DefaultTime2Wait", "0", "2", "2", false},
		{"DefaultTime2Retain", "20", "0", "0", false},
		{"ErrorRecoveryLevel", "2", "0", "0", false},
		{"MaxConnections", "8", "1", "1", false},
		{"InitialR2T", "No", "No", "No", false},
		{"InitialR2T", "No", "Yes", "Yes", false},
		{"InitialR2T", "Yes", "No", "Yes", false},
		{"ImmediateData", "Yes", "Yes", "Yes", false},
		{"ImmediateData", "Yes", "No", "No", false},
		{"ImmediateData", "maybe", "No", RejectValue, true},
		{"IFMarker", "Yes", "No", "No", false},
		{"DataPDUInOrder", "No", "Yes", "Yes", false},
		{"HeaderDigest", "CRC32C,None", "None,CRC32C", "CRC32C", false},
		{"HeaderDigest", "None,CRC32C", "CRC32C,None", "None", false},
		{"DataDigest", "CRC32C", "None", RejectValue, true},
		{"DataDigest", "MD5,None", "CRC32C,None", "None", false},
		{"MaxRecvDataSegmentLength", "65536", "", "65536", false},
		{"MaxRecvDataSegmentLength", "100", "", RejectValue, true},
		{"InitiatorName", "iqn.x", "", "iqn.x", false},
	}
	for _, tc := range tests {
		def, ok := LookupKey(tc.key)
		if !ok {
			t.Fatalf("unknown key %s", tc.key)
		}
		got, err := Answer(def, tc.offered, tc.local)
		if got != tc.want || (err != nil) != tc.fails {
			t.Errorf("Answer(%s=%s, local %s) = %s, %v; want %s", tc.key, tc.offered, tc.local, got, err, tc.want)
		}
	}
	if _, ok := LookupKey("X-com.example.foo"); ok {
		t.Error("vendor key known")
	}
}

func TestAccept(t *testing.T) {
	tests := []struct {
		key, offered, answer, want string
		fails                      bool
	}{
		{"MaxBurstLength", "262144", "65536", "65536", false},
		{"MaxBurstLength", "65536", "262144", "", true},
		{"DefaultTime2Wait", "2", "5", "5", false},
		{"DefaultTime2Wait", "2", "1", "", true},
		{"InitialR2T", "Yes", "No", "", true},
		{"InitialR2T", "No", "Yes", "Yes", false},
		{"ImmediateData", "No", "Yes", "", true},
		{"ImmediateData", "Yes", "No", "No", false},
		{"HeaderDigest", "CRC32C,None", "None", "None", false},
		{"HeaderDigest", "None", "CRC32C", "", true},
		{"ErrorRecoveryLevel", "0", NotUnderstood, "0", false},
		{"MaxOutstandingR2T", "8", RejectValue, "1", false},
	}
	for _, tc := range tests {
		def, _ := LookupKey(tc.key)
		got, err := Accept(def, tc.offered, tc.answer)
		if got != tc.want || (err != nil) != tc.fails {
			t.Errorf("Accept(%s offered %s answer %s) = %q, %v", tc.key, tc.offered, tc.answer, got, err)
		}
	}
}

func FuzzParseText(f *testing.F) {
	for _, tc := range textGolden {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		kvs, err := ParseText(data)
		if err != nil {
			return
		}
		again, err := ParseText(AppendText(nil, kvs...))
		if err != nil || len(again) != len(kvs) {
			t.Fatalf("re-parse: %v (%d vs %d)", err, len(again), len(kvs))
		}
		for i := range kvs {
			if again[i] != kvs[i] {
				t.Fatalf("pair %d: %q vs %q", i, again[i], kvs[i])
			}
		}
		for _, kv := range kvs {
			if def, ok := LookupKey(kv.Key); ok {
				if ans, err := Answer(def, kv.Value, def.Default); err == nil && def.Type != Declarative && def.Type != Special {
					if _, err := Accept(def, kv.Value, ans); err != nil {
						t.Fatalf("Accept rejects Answer's result %s=%s -> %s: %v", kv.Key, kv.Value, ans, err)
					}
				}
			}
			_, _ = ParseBinary(kv.Value)
			_, _ = ParseNumber(kv.Value)
			_, _ = SplitList(kv.Value)
		}
	})
}
