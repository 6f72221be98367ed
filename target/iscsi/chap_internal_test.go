package iscsi

import (
	"errors"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/lunway/lunway/target/pdu"
)

// chapStart runs the CHAP_A step and returns the identifier and challenge.
func chapStart(t *testing.T, a *chapAuth, algs string) (byte, []byte) {
	t.Helper()
	ans, done, err := a.handle([]pdu.KV{{Key: "CHAP_A", Value: algs}})
	if err != nil || done {
		t.Fatalf("CHAP_A: %v %v", err, done)
	}
	iv, _ := pdu.Lookup(ans, "CHAP_I")
	cv, _ := pdu.Lookup(ans, "CHAP_C")
	id, err := pdu.ParseCHAPIdentifier(iv)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pdu.ParseBinary(cv)
	if err != nil {
		t.Fatal(err)
	}
	return id, c
}

func TestCHAPTargetSide(t *testing.T) {
	cfg := &CHAPConfig{User: "u", Secret: "initiator-secret", MutualUser: "t", MutualSecret: "target-secret-x"}
	resp := func(alg int, id byte, secret string, c []byte) string {
		r, err := pdu.CHAPResponse(alg, id, []byte(secret), c)
		if err != nil {
			t.Fatal(err)
		}
		return pdu.FormatHex(r)
	}
	tests := []struct {
		name string
		algs string
		kvs  func(id byte, c []byte) []pdu.KV
		ok   bool
	}{
		{"MD5", "5", func(id byte, c []byte) []pdu.KV {
			return []pdu.KV{{Key: "CHAP_N", Value: "u"}, {Key: "CHAP_R", Value: resp(5, id, "initiator-secret", c)}}
		}, true},
		{"SHA-256 preferred when offered first", "7,5", func(id byte, c []byte) []pdu.KV {
			if len(c) != 32 {
				t.Fatalf("challenge of %d bytes for SHA-256", len(c))
			}
			return []pdu.KV{{Key: "CHAP_N", Value: "u"}, {Key: "CHAP_R", Value: resp(7, id, "initiator-secret", c)}}
		}, true},
		{"base64 response", "5", func(id byte, c []byte) []pdu.KV {
			r, _ := pdu.CHAPResponse(5, id, []byte("initiator-secret"), c)
			return []pdu.KV{{Key: "CHAP_N", Value: "u"}, {Key: "CHAP_R", Value: "0b" + b64(r)}}
		}, true},
		{"wrong identifier", "5", func(id byte, c []byte) []pdu.KV {
			return []pdu.KV{{Key: "CHAP_N", Value: "u"}, {Key: "CHAP_R", Value: resp(5, id+1, "initiator-secret", c)}}
		}, false},
		{"response for another algorithm", "5", func(id byte, c []byte) []pdu.KV {
			return []pdu.KV{{Key: "CHAP_N", Value: "u"}, {Key: "CHAP_R", Value: resp(7, id, "initiator-secret", c)}}
		}, false},
		{"malformed response", "5", func(id byte, c []byte) []pdu.KV {
			return []pdu.KV{{Key: "CHAP_N", Value: "u"}, {Key: "CHAP_R", Value: "zzz"}}
		}, false},
		{"missing CHAP_R", "5", func(id byte, c []byte) []pdu.KV { return []pdu.KV{{Key: "CHAP_N", Value: "u"}} }, false},
		{"reflected challenge", "5", func(id byte, c []byte) []pdu.KV {
			return []pdu.KV{{Key: "CHAP_N", Value: "u"}, {Key: "CHAP_R", Value: resp(5, id, "initiator-secret", c)},
				{Key: "CHAP_I", Value: strconv.Itoa(int(id))}, {Key: "CHAP_C", Value: pdu.FormatHex(c)}}
		}, false},
		{"CHAP_I without CHAP_C", "5", func(id byte, c []byte) []pdu.KV {
			return []pdu.KV{{Key: "CHAP_N", Value: "u"}, {Key: "CHAP_R", Value: resp(5, id, "initiator-secret", c)}, {Key: "CHAP_I", Value: "3"}}
		}, false},
		{"bad mutual identifier", "5", func(id byte, c []byte) []pdu.KV {
			return []pdu.KV{{Key: "CHAP_N", Value: "u"}, {Key: "CHAP_R", Value: resp(5, id, "initiator-secret", c)},
				{Key: "CHAP_I", Value: "256"}, {Key: "CHAP_C", Value: "0x0102030405060708"}}
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := &chapAuth{cfg: cfg}
			id, c := chapStart(t, a, tc.algs)
			_, done, err := a.handle(tc.kvs(id, c))
			var ae *errAuth
			if tc.ok != (err == nil && done) || !tc.ok && !errors.As(err, &ae) {
				t.Fatalf("done=%v err=%v, want ok=%v", done, err, tc.ok)
			}
		})
	}
	// Mutual: the target answers the initiator's challenge correctly.
	a := &chapAuth{cfg: cfg}
	id, c := chapStart(t, a, "5")
	mine := []byte{9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6}
	ans, done, err := a.handle([]pdu.KV{{Key: "CHAP_N", Value: "u"}, {Key: "CHAP_R", Value: resp(5, id, "initiator-secret", c)},
		{Key: "CHAP_I", Value: "42"}, {Key: "CHAP_C", Value: pdu.FormatHex(mine)}})
	if err != nil || !done {
		t.Fatal(err)
	}
	if n, _ := pdu.Lookup(ans, "CHAP_N"); n != "t" {
		t.Fatalf("CHAP_N %q", n)
	}
	if r, _ := pdu.Lookup(ans, "CHAP_R"); r != resp(5, 42, "target-secret-x", mine) {
		t.Fatalf("mutual CHAP_R %s", r)
	}
	// Two challenges are not the same.
	_, c1 := chapStart(t, &chapAuth{cfg: cfg}, "5")
	_, c2 := chapStart(t, &chapAuth{cfg: cfg}, "5")
	if string(c1) == string(c2) {
		t.Fatal("challenge repeated")
	}
}

func b64(b []byte) string {
	const enc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var out []byte
	for i := 0; i < len(b); i += 3 {
		var v uint32
		n := min(3, len(b)-i)
		for j := 0; j < 3; j++ {
			v <<= 8
			if j < n {
				v |= uint32(b[i+j])
			}
		}
		for j := 0; j < 4; j++ {
			if j <= n {
				out = append(out, enc[v>>(18-6*j)&63])
			} else {
				out = append(out, '=')
			}
		}
	}
	return string(out)
}

func TestFailLimiter(t *testing.T) {
	var l failLimiter
	l.init()
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	now := time.Unix(1000, 0)
	base := 100 * time.Millisecond
	for i, want := range []time.Duration{100, 200, 400, 800, 800} {
		if got := l.fail(a, base, now); got != want*time.Millisecond {
			t.Fatalf("failure %d: delay %v, want %v", i+1, got, want*time.Millisecond)
		}
	}
	if got := l.fail(b, base, now); got != base {
		t.Fatalf("other address: %v", got)
	}
	if got := l.fail(a, base, now.Add(failWindow+time.Second)); got != base {
		t.Fatalf("after the window: %v", got)
	}
	l.success(a)
	if got := l.fail(a, base, now); got != base {
		t.Fatalf("after success: %v", got)
	}
	if got := l.fail(a, 0, now); got != 0 {
		t.Fatalf("disabled: %v", got)
	}
	for i := 0; i < maxEntries+10; i++ {
		l.fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), base, now)
	}
	if len(l.entries) > maxEntries {
		t.Fatalf("%d entries", len(l.entries))
	}
}

func TestValidName(t *testing.T) {
	for name, ok := range map[string]bool{
		"iqn.2026-01.io.lunway:disk1": true, "IQN.2026-01.IO.LUNWAY:X": true, "eui.0123456789ABCDEF": true,
		"naa.52004567BA64678D": true, "naa.62004567BA64678D0123456789ABCDEF": true,
		"": false, "iqn.": false, "iqn.2026-01.x y": false, "eui.0123": false, "foo": false,
	} {
		if ValidName(name) != ok {
			t.Errorf("ValidName(%q) = %v", name, !ok)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{
		{QueueDepth: -1}, {MaxRecvDataSegmentLength: 100}, {MaxBurstLength: 1 << 24},
		{FirstBurstLength: 1 << 20, MaxBurstLength: 65536}, {MaxOutstandingR2T: -3},
		{DiscoveryAuth: &CHAPConfig{}},
	} {
		if err := o.Validate(); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%+v: %v", o, err)
		}
	}
	var zero Options
	if err := zero.Validate(); err != nil {
		t.Fatal(err)
	}
}
