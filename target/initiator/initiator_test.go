package initiator

import (
	"errors"
	"fmt"
	"testing"

	"github.com/lunway/lunway/target/pdu"
)

var senseGolden = []struct {
	name string
	in   []byte
	want Sense
	ok   bool
}{
	{"fixed unit attention", []byte{0x70, 0, 0x06, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x29, 0x00, 0, 0, 0, 0},
		Sense{Key: 6, ASC: 0x29, ASCQ: 0}, true},
	{"fixed deferred", []byte{0x71, 0, 0x03, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x11, 0x00}, Sense{Key: 3, ASC: 0x11}, true},
	{"descriptor", []byte{0x72, 0x05, 0x24, 0x00, 0, 0, 0, 0}, Sense{Key: 5, ASC: 0x24}, true},
	{"short fixed", []byte{0x70, 0, 0x0b}, Sense{Key: 0xb}, true},
	{"too short", []byte{0x70}, Sense{}, false},
	{"unknown format", []byte{0x00, 1, 2, 3}, Sense{}, false},
	{"empty", nil, Sense{}, false},
}

func TestParseSense(t *testing.T) {
	for _, tc := range senseGolden {
		got, ok := ParseSense(tc.in)
		if ok != tc.ok || got.Key != tc.want.Key || got.ASC != tc.want.ASC || got.ASCQ != tc.want.ASCQ {
			t.Errorf("%s: got %v %v, want %v %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestResultErr(t *testing.T) {
	r := &Result{Status: 2, Sense: senseGolden[0].in}
	var se *StatusError
	if err := r.Err(); !errors.As(err, &se) || se.Sense.Key != SenseUnitAttention || !r.UnitAttention() {
		t.Fatalf("%v", err)
	}
	if err := (&Result{}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := (&Result{Response: 1}).Err(); !errors.Is(err, ErrProtocol) {
		t.Fatal(err)
	}
	if err := (&Result{Status: 0x08}).Err(); !errors.As(err, &se) || se.Status != 8 {
		t.Fatal(err)
	}
}

var targetsGolden = []struct {
	name string
	in   string
	want string
	err  error
}{
	{"two targets", "TargetName=iqn.a\x00TargetAddress=10.0.0.1:3260,1\x00TargetAddress=[::1]:3260,2\x00TargetName=iqn.b\x00",
		"[{iqn.a [10.0.0.1:3260,1 [::1]:3260,2]} {iqn.b []}]", nil},
	{"empty", "", "[]", nil},
	{"address first", "TargetAddress=1.2.3.4:3260,1\x00", "", ErrProtocol},
	{"rejected", "SendTargets=Reject\x00", "", ErrNegotiation},
	{"malformed", "TargetName\x00", "", ErrProtocol},
	{"no final NUL", "TargetName=iqn.a", "[{iqn.a []}]", nil},
}

func TestParseTargets(t *testing.T) {
	for _, tc := range targetsGolden {
		got, err := parseTargets([]byte(tc.in))
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.err)
			continue
		}
		if err == nil {
			if s := fmt.Sprint(got); s != tc.want && !(tc.want == "[]" && len(got) == 0) {
				t.Errorf("%s: got %s, want %s", tc.name, s, tc.want)
			}
		}
	}
}

func TestLoginErrorText(t *testing.T) {
	for status, want := range map[uint16]string{
		pdu.LoginAuthFailure: "authentication failure", pdu.LoginTargetNotFound: "target not found",
		0x0299: "initiator error", 0x0399: "target error",
	} {
		if got := (&LoginError{Status: status}).Error(); !contains(got, want) {
			t.Errorf("0x%04x: %s", status, got)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func FuzzParseSense(f *testing.F) {
	for _, tc := range senseGolden {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, ok := ParseSense(b)
		if ok && s.Key > 0x0f {
			t.Fatalf("key %x", s.Key)
		}
	})
}

func FuzzParseTargets(f *testing.F) {
	for _, tc := range targetsGolden {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, err := parseTargets(b)
		if err == nil {
			for _, tg := range ts {
				if tg.Name == "" && len(tg.Addresses) == 0 && len(b) == 0 {
					t.Fatal("empty target from empty input")
				}
			}
		}
	})
}
