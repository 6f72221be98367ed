package scsi

import (
	"encoding/binary"
	"testing"
)

// seedCDBs are CDBs from the command tables, to seed the fuzzers.
var seedCDBs = []string{
	"000000000000", "12000000ff00", "120100 00ff00", "120183 00ff00", "1201b0 00ff00",
	"2500000000000000 0000", "9e10 0000000000000000 00000020 0000",
	"2800 00000010 00 0001 00", "2a08 00000010 00 0001 00", "0800001001 00",
	"8800 0000000000000010 00000001 0000", "a800 00000010 00000001 0000",
	"2f02 00000040 00 0001 00", "3500 00000000 00 0000 00", "4100 00000100 00 0001 00",
	"4200 00000000 00 0018 00", "9309 0000000000000100 0000012c 0000",
	"9e12 0000000000000000 00000020 0000", "a000 00 000000 00000010 0000",
	"1a00 3f 00 ff 00", "5a10 08 00 000000 00ff 00", "1510 0000 18 00", "5510 0000000000 0014 00",
	"a30c 00 00 0000 00010000 0000", "a30c 02 9e 0010 00000100 0000", "a30d 80 000000 00000010 0000",
	"1b00 0000 02 00", "1e00 0000 01 00", "1600 00000000", "1700 00000000",
	"5e00 0000000000 1000 00", "5e03 0000000000 1000 00", "5f00 00 00000000 18 00",
	"8900 0000000000000010 000000 01 0000", "8300 0000000000000000 00000060 0000",
	"8403 00 00000000000000 00000100 0000", "a32a 00000000 00000100 0000",
}

func fuzzTarget(t testing.TB) (*Target, *Nexus) {
	alua, err := NewALUA(true, PortGroup{ID: 1, State: ALUAActiveOptimized, Ports: []uint16{1}})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, nil, &TargetOptions{ALUA: alua}, nil)
	n := nexus("iqn.2026-01.io.lunway:fuzz", 1, 1)
	f.ready(n)
	return f.tg, n
}

func validStatus(s Status) bool {
	switch s {
	case StatusGood, StatusCheckCondition, StatusConditionMet, StatusBusy,
		StatusReservationConflict, StatusTaskSetFull, StatusTaskAborted:
		return true
	}
	return false
}

// FuzzCDB sends arbitrary CDBs with arbitrary data-out buffers: the
// device server never panics, always answers with a valid status, and a
// CHECK CONDITION always carries parseable sense.
func FuzzCDB(f *testing.F) {
	for _, s := range seedCDBs {
		cdb := mustHex(f, s)
		f.Add(cdb, []byte{}, uint8(0))
		f.Add(cdb, make([]byte, 512), uint8(0))
	}
	f.Add(mustHex(f, "5f00 00 00000000 18 00"), make([]byte, 24), uint8(0))
	f.Add(mustHex(f, "1510 0000 10 00"), mustHex(f, "00000000 0a0a 00 10 08 00 0000 ffff 0000"), uint8(0))
	f.Add(mustHex(f, "2a00 00000000 00 0001 00"), make([]byte, 512), uint8(1))
	tg, n := fuzzTarget(f)
	f.Fuzz(func(t *testing.T, cdb, out []byte, lun uint8) {
		if len(cdb) < 6 || len(cdb) > 32 || len(out) > 1<<20 {
			return
		}
		res := runCmd(tg, n, uint64(lun%3), cdb, out, TaskAttr(lun%5))
		if !validStatus(res.Status) {
			t.Fatalf("status %#x", res.Status)
		}
		if res.Status == StatusCheckCondition {
			if _, ok := ParseSense(res.Sense); !ok {
				t.Fatalf("CHECK CONDITION with sense %x", res.Sense)
			}
		} else if len(res.Sense) != 0 {
			t.Fatalf("status %#x with sense", res.Status)
		}
		if len(res.Data) > DefaultMaxTransferBytes+4096 {
			t.Fatalf("%d bytes of data", len(res.Data))
		}
	})
}

func FuzzParseSense(f *testing.F) {
	for _, s := range []senseData{
		invalidCDB(5, 2), {key: 0xe, asc: 0x1d00, info: 700, infoValid: true}, illegal(ascLBAOutOfRange),
		{key: 6, asc: 0x2900}, {key: 0xe, asc: 0x1d00, info: 1 << 40, infoValid: true},
	} {
		f.Add(s.encode(false))
		f.Add(s.encode(true))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, ok := ParseSense(b)
		if !ok {
			return
		}
		// Re-encoding what was decoded and decoding again is stable.
		sd := senseData{key: s.Key, asc: asc(s.ASC)<<8 | asc(s.ASCQ), info: s.Info, infoValid: s.InfoValid, sks: s.SKS}
		for _, desc := range []bool{false, true} {
			s2, ok := ParseSense(sd.encode(desc))
			if !ok || s2.Key != s.Key || s2.ASC != s.ASC || s2.ASCQ != s.ASCQ || s2.SKS != s.SKS&0xffffff {
				t.Fatalf("round trip %+v → %+v", s, s2)
			}
		}
	})
}

func TestSenseGolden(t *testing.T) {
	for _, c := range []struct {
		s          senseData
		fixed, dsc string
	}{
		{invalidCDB(5, 2), "70 00 05 00000000 0a 00000000 24 00 00 ca 0005", "72 05 24 00 000000 08 02 06 0000 ca0005 00"},
		{senseData{key: 0xe, asc: 0x1d00, info: 700, infoValid: true}, "f0 00 0e 000002bc 0a 00000000 1d 00 00 000000",
			"72 0e 1d 00 000000 0c 00 0a 80 00 00000000000002bc"},
		{senseData{key: 6, asc: 0x2a09}, "70 00 06 00000000 0a 00000000 2a 09 00 000000", "72 06 2a 09 000000 00"},
	} {
		if got := c.s.encode(false); string(got) != string(mustHex(t, c.fixed)) {
			t.Errorf("fixed %x, want %s", got, c.fixed)
		}
		if got := c.s.encode(true); string(got) != string(mustHex(t, c.dsc)) {
			t.Errorf("descriptor %x, want %s", got, c.dsc)
		}
	}
}

func FuzzTransportID(f *testing.F) {
	for _, g := range []registration{
		{initiator: "iqn.2026-01.io.lunway:a", anyISID: true},
		{initiator: "iqn.2026-01.io.lunway:b", isid: [6]byte{0x40, 0, 0, 0, 0, 1}},
	} {
		f.Add(g.transportID())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		g, n, ok := parseTransportID(b)
		if !ok {
			return
		}
		if n > len(b) || n > maxTransportIDLen {
			t.Fatalf("length %d of %d", n, len(b))
		}
		g2, _, ok := parseTransportID(g.transportID())
		if !ok || g2.initiator != g.initiator || g2.anyISID != g.anyISID || g2.isid != g.isid {
			t.Fatalf("round trip %+v → %+v", g, g2)
		}
	})
}

func FuzzPRSnapshot(f *testing.F) {
	f.Add([]byte(`{"version":1,"aptpl":true,"generation":3,"type":5,"holder":0,"registrations":[{"key":1,"initiator":"iqn.x","isid":"400000000001","rel_port":1}]}`))
	f.Add([]byte(`{"version":1,"holder":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodePRSnapshot(b)
		if err != nil {
			return
		}
		var p prState
		p.mu.Lock()
		p.restoreLocked(s)
		got := p.snapshotLocked()
		p.mu.Unlock()
		if got.Generation != s.Generation || len(got.Registrations) != len(s.Registrations) || got.Type != s.Type {
			t.Fatalf("restore/snapshot %+v → %+v", s, got)
		}
	})
}

// FuzzParameterLists sends arbitrary parameter lists to the commands that
// parse them (MODE SELECT, PR OUT, UNMAP, EXTENDED COPY, SET TARGET PORT
// GROUPS, COMPARE AND WRITE), with the CDB's length field matching.
func FuzzParameterLists(f *testing.F) {
	for op := byte(0); op < 6; op++ {
		f.Add(op, byte(0), make([]byte, 24))
	}
	f.Add(byte(0), byte(0x10), mustHex(f, "0000000000000000 0812 00"+"0000000000000000000000000000000000"))
	f.Add(byte(2), byte(0), mustHex(f, "0016 0010 00000000 0000000000000010 00000001 00000000"))
	f.Add(byte(3), byte(0), xcopyParams([][16]byte{{0x60}}, [][5]uint64{{0, 0, 1, 0, 1}}))
	f.Add(byte(1), byte(0x07), mustHex(f, "0000000000000000 0000000000000001 00 02 0001 00000018"+"4005001478780000000000000000000000000000000000"))
	tg, n := fuzzTarget(f)
	f.Fuzz(func(t *testing.T, which, b1 byte, p []byte) {
		if len(p) > 1<<16 {
			return
		}
		var cdb []byte
		switch which % 6 {
		case 0:
			cdb = []byte{0x55, b1 & 0x11, 0, 0, 0, 0, 0, 0, 0, 0}
			binary.BigEndian.PutUint16(cdb[7:], uint16(len(p)))
		case 1:
			cdb = []byte{0x5f, b1 & 0x07, 0x05, 0, 0, 0, 0, 0, 0, 0}
			binary.BigEndian.PutUint32(cdb[5:], uint32(len(p)))
		case 2:
			cdb = []byte{0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0}
			binary.BigEndian.PutUint16(cdb[7:], uint16(len(p)))
		case 3:
			cdb = xcopyCDB(len(p))
		case 4:
			cdb = []byte{0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
			binary.BigEndian.PutUint32(cdb[6:], uint32(len(p)))
		case 5:
			cdb = cawCDB(uint64(b1), byte(len(p)/1024))
		}
		res := runCmd(tg, n, 0, cdb, p, AttrSimple)
		if !validStatus(res.Status) {
			t.Fatalf("status %#x", res.Status)
		}
		if res.Status == StatusCheckCondition {
			if _, ok := ParseSense(res.Sense); !ok {
				t.Fatalf("bad sense %x", res.Sense)
			}
		}
	})
}
