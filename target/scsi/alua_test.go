package scsi

import (
	"errors"
	"testing"
)

func TestALUA(t *testing.T) {
	alua, err := NewALUA(true,
		PortGroup{ID: 1, State: ALUAActiveOptimized, Preferred: true, Ports: []uint16{1}},
		PortGroup{ID: 2, State: ALUAStandby, Ports: []uint16{2}},
	)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, nil, &TargetOptions{ALUA: alua}, nil)
	p1 := nexus("iqn.2026-01.io.lunway:a", 1, 1)
	p2 := nexus("iqn.2026-01.io.lunway:a", 1, 2)
	for _, n := range []*Nexus{p1, p2} {
		res := f.run(n, 0, mustHex(t, "12 00 00 0024 00"), nil)
		if res.Data[5]&0x30 != 0x30 || res.Data[6]&0x10 == 0 {
			t.Fatalf("TPGS/MULTIP %#x %#x", res.Data[5], res.Data[6])
		}
		f.run(n, 0, tur, nil) // power-on UA
	}
	// Standby allows MODE SENSE, REPORT TARGET PORT GROUPS, PR IN; not I/O.
	expect(t, f.run(p2, 0, read10, nil), StatusCheckCondition, 2, 0x04, 0x0b)
	expect(t, f.run(p2, 0, tur, nil), StatusCheckCondition, 2, 0x04, 0x0b)
	good(t, f.run(p2, 0, mustHex(t, "1a 00 3f 00 ff 00"), nil))
	good(t, f.run(p2, 0, []byte{0x5e, 0, 0, 0, 0, 0, 0, 0, 0x10, 0}, nil))
	good(t, f.run(p1, 0, read10, nil))

	// REPORT TARGET PORT GROUPS, extended header.
	res := f.run(p2, 0, mustHex(t, "a3 2a 00000000 00000100 00 00"), nil)
	good(t, res)
	want := "0000001c 10000000" +
		"80 8f 0001 00 00 00 01 00000001" +
		"02 8f 0002 00 00 00 01 00000002"
	if got := mustHex(t, want); string(res.Data) != string(got) {
		t.Fatalf("RTPG\n got %x\nwant %x", res.Data, got)
	}
	// VPD 0x83 reports the port's group.
	res = f.run(p2, 0, mustHex(t, "12 01 83 0100 00"), nil)
	good(t, res)
	if !hasDesignator(res.Data[4:], 5, []byte{0, 0, 0, 2}) || !hasDesignator(res.Data[4:], 4, []byte{0, 0, 0, 2}) {
		t.Fatalf("VPD 0x83 %x", res.Data)
	}

	// Implicit transition from the daemon: every nexus gets 2A/06.
	if err := alua.SetState(2, ALUAActiveNonOptimized); err != nil {
		t.Fatal(err)
	}
	expect(t, f.run(p2, 0, read10, nil), StatusCheckCondition, 6, 0x2a, 0x06)
	good(t, f.run(p2, 0, read10, nil))
	for _, c := range []struct {
		s   ALUAState
		asc uint8
	}{{ALUAUnavailable, 0x0c}, {ALUATransitioning, 0x0a}} {
		alua.SetState(2, c.s)
		f.run(p2, 0, tur, nil)
		expect(t, f.run(p2, 0, read10, nil), StatusCheckCondition, 2, 0x04, c.asc)
		// INQUIRY, REPORT LUNS, RTPG work in every state.
		good(t, f.run(p2, 0, mustHex(t, "12 00 00 0024 00"), nil))
		good(t, f.run(p2, 0, mustHex(t, "a3 0a 00000000 00000100 00 00"), nil))
	}
	// Explicit: SET TARGET PORT GROUPS from the initiator.
	stpg := mustHex(t, "00000000 00 00 0002 02 00 0001")
	good(t, f.run(p2, 0, mustHex(t, "a4 0a 00000000 0000000c 00 00"), stpg))
	if g := alua.Groups(); g[0].State != ALUAStandby || g[1].State != ALUAActiveOptimized {
		t.Fatalf("groups %+v", g)
	}
	expect(t, f.run(p1, 0, read10, nil), StatusCheckCondition, 6, 0x2a, 0x06)
	expect(t, f.run(p1, 0, read10, nil), StatusCheckCondition, 2, 0x04, 0x0b)
	res = f.run(p2, 0, mustHex(t, "a3 0a 00000000 00000100 00 00"), nil)
	if res.Data[4+5] != 0x01 {
		t.Fatalf("status code after STPG %x", res.Data)
	}
	// Invalid requests.
	expect(t, f.run(p2, 0, mustHex(t, "a4 0a 00000000 00000008 00 00"), mustHex(t, "00000000 0f 00 0001")), StatusCheckCondition, 5, 0x26, 0)
	expect(t, f.run(p2, 0, mustHex(t, "a4 0a 00000000 00000008 00 00"), mustHex(t, "00000000 00 00 0009")), StatusCheckCondition, 5, 0x26, 0)
	// API validation.
	if err := alua.SetState(9, ALUAStandby); !errors.Is(err, ErrNoSuchGroup) {
		t.Fatal(err)
	}
	if err := alua.SetState(1, ALUAState(7)); !errors.Is(err, ErrInvalidState) {
		t.Fatal(err)
	}
	if err := alua.SetGroup(PortGroup{ID: 3, Ports: []uint16{1}}); !errors.Is(err, ErrInvalidGroup) {
		t.Fatal(err)
	}
	if _, err := NewALUA(false, PortGroup{ID: 0}); err == nil {
		t.Fatal("group 0 accepted")
	}
}

func TestALUAImplicitOnly(t *testing.T) {
	alua, _ := NewALUA(false, PortGroup{ID: 1, State: ALUAActiveOptimized, Ports: []uint16{1}})
	f := newFixture(t, nil, &TargetOptions{ALUA: alua}, nil)
	n := nexus("iqn.2026-01.io.lunway:a", 1, 1)
	f.ready(n)
	res := f.run(n, 0, mustHex(t, "12 00 00 0024 00"), nil)
	if res.Data[5]&0x30 != 0x10 {
		t.Fatalf("TPGS %#x", res.Data[5])
	}
	expect(t, f.run(n, 0, mustHex(t, "a4 0a 00000000 0000000c 00 00"), make([]byte, 12)), StatusCheckCondition, 5, 0x24, 0)
}

// hasDesignator reports whether a VPD 0x83 designator list has one of the
// type with the value.
func hasDesignator(b []byte, typ byte, v []byte) bool {
	for len(b) >= 4 {
		n := 4 + int(b[3])
		if n > len(b) {
			return false
		}
		if b[1]&0x0f == typ && string(b[4:n]) == string(v) {
			return true
		}
		b = b[n:]
	}
	return false
}

func TestDeviceIdentification(t *testing.T) {
	f := newFixture(t, nil, nil, func(o *LUOptions) { o.NAA = [16]byte{0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15} })
	n := nexus("iqn.2026-01.io.lunway:a", 1, 7)
	f.ready(n)
	res := f.run(n, 0, mustHex(t, "12 01 83 0100 00"), nil)
	good(t, res)
	d := res.Data[4:]
	if int(be16(res.Data[2:4])) != len(d) {
		t.Fatalf("page length %d for %d bytes", be16(res.Data[2:4]), len(d))
	}
	naa := f.lu.NAA()
	for _, c := range []struct {
		typ byte
		v   []byte
	}{
		{3, naa[:]},
		{1, append(padASCII("LUNWAY", 8), "SN0001"...)},
		{4, []byte{0, 0, 0, 7}},
		{5, []byte{0, 0, 0, 1}},
		{8, scsiName(n.Port.Name)},
		{8, scsiName(testIQN)},
	} {
		if !hasDesignator(d, c.typ, c.v) {
			t.Errorf("designator type %d %x missing from %x", c.typ, c.v, d)
		}
	}
	// A zero NAA is derived, stably, from the serial number.
	lu1, _ := NewLU(LUOptions{Device: newMem(t, 64, nil), SerialNumber: "X"})
	lu2, _ := NewLU(LUOptions{Device: newMem(t, 64, nil), SerialNumber: "X"})
	if lu1.NAA() != lu2.NAA() || lu1.NAA()[0]>>4 != 6 {
		t.Fatalf("derived NAA %x / %x", lu1.NAA(), lu2.NAA())
	}
}
