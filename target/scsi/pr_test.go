package scsi

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PR OUT service actions.
const (
	saRegister       = 0x00
	saReserve        = 0x01
	saRelease        = 0x02
	saClear          = 0x03
	saPreempt        = 0x04
	saPreemptAbort   = 0x05
	saRegisterIgnore = 0x06
	saRegisterMove   = 0x07
)

// PR OUT parameter flag bits (byte 20).
const (
	flagAPTPL   = 0x01
	flagAllTgPt = 0x04
	flagSpecIPT = 0x08
)

func prOutCDB(sa, typ byte, plen int) []byte {
	c := []byte{0x5f, sa, typ, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(c[5:9], uint32(plen))
	return c
}

func (f *fixture) prOut(n *Nexus, sa, typ byte, key, saKey uint64, flags byte, extra []byte) Result {
	p := make([]byte, 24, 24+len(extra))
	binary.BigEndian.PutUint64(p[0:], key)
	binary.BigEndian.PutUint64(p[8:], saKey)
	p[20] = flags
	p = append(p, extra...)
	return f.run(n, 0, prOutCDB(sa, typ, len(p)), p)
}

func (f *fixture) prIn(n *Nexus, sa byte) Result {
	return f.run(n, 0, []byte{0x5e, sa, 0, 0, 0, 0, 0, 0x10, 0x00, 0}, nil)
}

type keysView struct {
	gen  uint32
	keys []uint64
}

func (f *fixture) readKeys(n *Nexus) keysView {
	f.t.Helper()
	res := f.prIn(n, 0)
	good(f.t, res)
	v := keysView{gen: be32(res.Data)}
	for off := 8; off+8 <= len(res.Data); off += 8 {
		v.keys = append(v.keys, be64(res.Data[off:]))
	}
	return v
}

// readReservation returns the holder key and type, type 0 when none.
func (f *fixture) readReservation(n *Nexus) (uint64, byte) {
	f.t.Helper()
	res := f.prIn(n, 1)
	good(f.t, res)
	if be32(res.Data[4:]) == 0 {
		return 0, 0
	}
	return be64(res.Data[8:]), res.Data[21] & 0x0f
}

var (
	read10  = []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0}
	write10 = []byte{0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0}
	tur     = []byte{0, 0, 0, 0, 0, 0}
)

func (f *fixture) canRead(n *Nexus) bool {
	return f.run(n, 0, read10, nil).Status == StatusGood
}

func (f *fixture) canWrite(n *Nexus) bool {
	return f.run(n, 0, write10, make([]byte, 512)).Status == StatusGood
}

func newPRFixture(t *testing.T, mod func(*LUOptions)) (*fixture, *Nexus, *Nexus, *Nexus) {
	f := newFixture(t, nil, nil, mod)
	a := nexus("iqn.2026-01.io.lunway:a", 1, 1)
	b := nexus("iqn.2026-01.io.lunway:b", 2, 1)
	c := nexus("iqn.2026-01.io.lunway:c", 3, 2)
	for _, n := range []*Nexus{a, b, c} {
		f.ready(n)
	}
	return f, a, b, c
}

func TestPRBasic(t *testing.T) {
	f, a, b, _ := newPRFixture(t, nil)
	// Registering with a non-zero key while unregistered is a conflict.
	expect(t, f.prOut(a, saRegister, 0, 5, 0xa, 0, nil), StatusReservationConflict, 0, 0, 0)
	good(t, f.prOut(a, saRegister, 0, 0, 0xa, 0, nil))
	if v := f.readKeys(b); v.gen != 1 || len(v.keys) != 1 || v.keys[0] != 0xa {
		t.Fatalf("keys %+v", v)
	}
	// Wrong key.
	expect(t, f.prOut(a, saReserve, prTypeWE, 0xb, 0, 0, nil), StatusReservationConflict, 0, 0, 0)
	// Bad type, bad scope.
	expect(t, f.prOut(a, saReserve, 0x2, 0xa, 0, 0, nil), StatusCheckCondition, 5, 0x24, 0)
	expect(t, f.prOut(a, saReserve, 0x11, 0xa, 0, 0, nil), StatusCheckCondition, 5, 0x24, 0)
	good(t, f.prOut(a, saReserve, prTypeWE, 0xa, 0, 0, nil))
	// Reserving again with the same type is GOOD; another type conflicts.
	good(t, f.prOut(a, saReserve, prTypeWE, 0xa, 0, 0, nil))
	expect(t, f.prOut(a, saReserve, prTypeEA, 0xa, 0, 0, nil), StatusReservationConflict, 0, 0, 0)
	if k, typ := f.readReservation(b); k != 0xa || typ != prTypeWE {
		t.Fatalf("reservation %x type %d", k, typ)
	}
	if !f.canRead(b) || f.canWrite(b) || !f.canWrite(a) {
		t.Fatal("WE access wrong")
	}
	// SCSI-2 RESERVE/RELEASE under a persistent reservation (CRH=1): the
	// holder's are GOOD without effect, a non-registrant's conflict.
	good(t, f.run(a, 0, []byte{0x16, 0, 0, 0, 0, 0}, nil))
	good(t, f.run(a, 0, []byte{0x17, 0, 0, 0, 0, 0}, nil))
	expect(t, f.run(b, 0, []byte{0x16, 0, 0, 0, 0, 0}, nil), StatusReservationConflict, 0, 0, 0)
	expect(t, f.run(b, 0, []byte{0x17, 0, 0, 0, 0, 0}, nil), StatusReservationConflict, 0, 0, 0)
	if f.lu.pr.mu.scsi2Held {
		t.Fatal("RESERVE under a persistent reservation took a SCSI-2 reservation")
	}
	// INQUIRY, REPORT LUNS, TUR, READ CAPACITY are allowed.
	good(t, f.run(b, 0, mustHex(t, "12 00 00 0024 00"), nil))
	good(t, f.run(b, 0, tur, nil))
	good(t, f.run(b, 0, mustHex(t, "25 00 00000000 0000 00 00"), nil))
	// Release by a non-registrant conflicts; with the wrong type fails.
	expect(t, f.prOut(b, saRelease, prTypeWE, 0, 0, 0, nil), StatusReservationConflict, 0, 0, 0)
	expect(t, f.prOut(a, saRelease, prTypeEA, 0xa, 0, 0, nil), StatusCheckCondition, 5, 0x26, 0x04)
	good(t, f.prOut(a, saRelease, prTypeWE, 0xa, 0, 0, nil))
	if _, typ := f.readReservation(b); typ != 0 {
		t.Fatal("still reserved")
	}
	if !f.canWrite(b) {
		t.Fatal("write refused after release")
	}
	// Changing the key, then unregistering.
	good(t, f.prOut(a, saRegister, 0, 0xa, 0xaa, 0, nil))
	good(t, f.prOut(a, saRegister, 0, 0xaa, 0, 0, nil))
	if v := f.readKeys(a); len(v.keys) != 0 || v.gen != 3 {
		t.Fatalf("keys %+v", v)
	}
	// Parameter list length must be 24.
	expect(t, f.run(a, 0, prOutCDB(saRegister, 0, 20), make([]byte, 20)), StatusCheckCondition, 5, 0x1a, 0)
	// APTPL without a store is refused.
	expect(t, f.prOut(a, saRegister, 0, 0, 1, flagAPTPL, nil), StatusCheckCondition, 5, 0x26, 0)
	// Capabilities.
	res := f.prIn(a, 2)
	good(t, res)
	if be16(res.Data) != 8 || res.Data[2]&0x01 != 0 || be16(res.Data[4:]) != 0xea01 {
		t.Fatalf("capabilities %x", res.Data)
	}
	expect(t, f.prIn(a, 4), StatusCheckCondition, 5, 0x24, 0)
}

// TestPRTypes checks read and write access of a registered non-holder and
// of an unregistered nexus under every reservation type (SPC-4 table 49).
func TestPRTypes(t *testing.T) {
	for _, c := range []struct {
		typ                   byte
		regRead, regWrite     bool
		unregRead, unregWrite bool
		name                  string
	}{
		{prTypeWE, true, false, true, false, "WE"},
		{prTypeEA, false, false, false, false, "EA"},
		{prTypeWERO, true, true, true, false, "WERO"},
		{prTypeEARO, true, true, false, false, "EARO"},
		{prTypeWEAR, true, true, true, false, "WEAR"},
		{prTypeEAAR, true, true, false, false, "EAAR"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, a, b, reg := newPRFixture(t, nil)
			good(t, f.prOut(a, saRegister, 0, 0, 0xa, 0, nil))
			good(t, f.prOut(reg, saRegister, 0, 0, 0xc, 0, nil))
			good(t, f.prOut(a, saReserve, c.typ, 0xa, 0, 0, nil))
			if !f.canRead(a) || !f.canWrite(a) {
				t.Fatal("holder refused")
			}
			if got := f.canRead(reg); got != c.regRead {
				t.Errorf("registrant read %v", got)
			}
			if got := f.canWrite(reg); got != c.regWrite {
				t.Errorf("registrant write %v", got)
			}
			if got := f.canRead(b); got != c.unregRead {
				t.Errorf("unregistered read %v", got)
			}
			if got := f.canWrite(b); got != c.unregWrite {
				t.Errorf("unregistered write %v", got)
			}
			k, typ := f.readReservation(b)
			if typ != c.typ || (k == 0xa) == allRegistrants(c.typ) {
				t.Errorf("reservation key %x type %d", k, typ)
			}
			// Releasing a registrants-only or all-registrants reservation
			// tells the other registrants.
			good(t, f.prOut(a, saRelease, c.typ, 0xa, 0, 0, nil))
			if c.typ != prTypeWE && c.typ != prTypeEA {
				expect(t, f.run(reg, 0, tur, nil), StatusCheckCondition, 6, 0x2a, 0x04)
			}
			good(t, f.run(reg, 0, tur, nil))
		})
	}
}

// TestPRWindowsCluster follows the persistent reservation part of the
// Windows failover cluster validation: each node registers (REGISTER AND
// IGNORE EXISTING KEY), clears, re-registers, reserves Write Exclusive -
// Registrants Only, and the other node takes over by PREEMPT.
func TestPRWindowsCluster(t *testing.T) {
	f, n1, _, _ := newPRFixture(t, nil)
	n2 := nexus("iqn.1991-05.com.microsoft:node2", 7, 2)
	f.ready(n2)
	const k1, k2 = 0x1111, 0x2222
	// Register-and-ignore with key 0 while unregistered does nothing.
	good(t, f.prOut(n1, saRegisterIgnore, 0, 0, 0, 0, nil))
	good(t, f.prOut(n1, saRegisterIgnore, 0, 0, k1, 0, nil))
	good(t, f.prOut(n1, saClear, 0, k1, 0, 0, nil))
	if v := f.readKeys(n1); len(v.keys) != 0 {
		t.Fatalf("keys after clear %+v", v)
	}
	good(t, f.prOut(n1, saRegister, 0, 0, k1, 0, nil))
	good(t, f.prOut(n1, saReserve, prTypeWERO, k1, 0, 0, nil))
	good(t, f.prOut(n2, saRegisterIgnore, 0, 0, k2, 0, nil))
	// Node 2 is a registrant: it may write under WERO.
	if !f.canWrite(n2) {
		t.Fatal("registrant write refused under WERO")
	}
	gen := f.readKeys(n2).gen
	good(t, f.prOut(n2, saPreempt, prTypeWERO, k2, k1, 0, nil))
	if k, typ := f.readReservation(n2); k != k2 || typ != prTypeWERO {
		t.Fatalf("after preempt: holder %x type %d", k, typ)
	}
	if v := f.readKeys(n2); len(v.keys) != 1 || v.keys[0] != k2 || v.gen != gen+1 {
		t.Fatalf("after preempt: keys %+v (gen before %d)", v, gen)
	}
	// Node 1 lost its registration: REGISTRATIONS PREEMPTED, then conflicts.
	expect(t, f.run(n1, 0, tur, nil), StatusCheckCondition, 6, 0x2a, 0x05)
	if f.canWrite(n1) {
		t.Fatal("preempted node may write")
	}
	expect(t, f.prOut(n1, saReserve, prTypeWERO, k1, 0, 0, nil), StatusReservationConflict, 0, 0, 0)
	// READ FULL STATUS: one descriptor, the holder, with its TransportID.
	res := f.prIn(n1, 3)
	good(t, res)
	d := res.Data
	if be32(d[4:]) != uint32(len(d)-8) || be64(d[8:]) != k2 || d[8+12]&0x01 == 0 || d[8+13] != prTypeWERO ||
		be16(d[8+18:]) != 2 {
		t.Fatalf("full status %x", d)
	}
	tidLen := int(be32(d[8+20:]))
	reg, n, ok := parseTransportID(d[8+24 : 8+24+tidLen])
	if !ok || n != tidLen || reg.initiator != n2.InitiatorName || reg.isid != n2.ISID {
		t.Fatalf("transport ID %x → %+v", d[8+24:], reg)
	}
}

func TestPRPreemptRegistrationsOnly(t *testing.T) {
	f, a, b, c := newPRFixture(t, nil)
	good(t, f.prOut(a, saRegister, 0, 0, 0xa, 0, nil))
	good(t, f.prOut(b, saRegister, 0, 0, 0xb, 0, nil))
	good(t, f.prOut(c, saRegister, 0, 0, 0xb, 0, nil)) // keys need not be unique
	// No reservation: PREEMPT removes the registrations with the key.
	expect(t, f.prOut(a, saPreempt, prTypeWE, 0xa, 0, 0, nil), StatusCheckCondition, 5, 0x26, 0)
	expect(t, f.prOut(a, saPreempt, prTypeWE, 0xa, 0x77, 0, nil), StatusReservationConflict, 0, 0, 0)
	good(t, f.prOut(a, saPreemptAbort, prTypeWE, 0xa, 0xb, 0, nil))
	if v := f.readKeys(a); len(v.keys) != 1 || v.keys[0] != 0xa {
		t.Fatalf("keys %+v", v)
	}
	expect(t, f.run(b, 0, tur, nil), StatusCheckCondition, 6, 0x2a, 0x05)
	expect(t, f.run(c, 0, tur, nil), StatusCheckCondition, 6, 0x2a, 0x05)
	if _, typ := f.readReservation(a); typ != 0 {
		t.Fatal("preempting registrations created a reservation")
	}
	// CLEAR tells the others RESERVATIONS PREEMPTED.
	good(t, f.prOut(b, saRegister, 0, 0, 0xb, 0, nil))
	good(t, f.prOut(a, saReserve, prTypeEAAR, 0xa, 0, 0, nil))
	good(t, f.prOut(a, saClear, 0, 0xa, 0, 0, nil))
	expect(t, f.run(b, 0, tur, nil), StatusCheckCondition, 6, 0x2a, 0x03)
	if _, typ := f.readReservation(a); typ != 0 {
		t.Fatal("reservation survived CLEAR")
	}
}

func TestPRAllRegistrantsPreempt(t *testing.T) {
	f, a, b, c := newPRFixture(t, nil)
	good(t, f.prOut(a, saRegister, 0, 0, 0xa, 0, nil))
	good(t, f.prOut(b, saRegister, 0, 0, 0xb, 0, nil))
	good(t, f.prOut(a, saReserve, prTypeWEAR, 0xa, 0, 0, nil))
	// The holder of an all-registrants reservation unregistering leaves
	// it in place while registrants remain.
	good(t, f.prOut(a, saRegister, 0, 0xa, 0, 0, nil))
	if _, typ := f.readReservation(c); typ != prTypeWEAR {
		t.Fatal("all-registrants reservation lost")
	}
	if f.canWrite(c) || !f.canWrite(b) {
		t.Fatal("WEAR access wrong")
	}
	good(t, f.prOut(a, saRegister, 0, 0, 0xa, 0, nil))
	// PREEMPT with key 0 removes every other registration.
	good(t, f.prOut(a, saPreempt, prTypeEA, 0xa, 0, 0, nil))
	if k, typ := f.readReservation(c); k != 0xa || typ != prTypeEA {
		t.Fatalf("reservation %x type %d", k, typ)
	}
	if v := f.readKeys(c); len(v.keys) != 1 {
		t.Fatalf("keys %+v", v)
	}
}

func TestPRSpecIPTAndAllTgPt(t *testing.T) {
	f, a, _, c := newPRFixture(t, nil)
	// Register a and, through SPEC_I_PT, initiator c by name (format 00b).
	tid := make([]byte, 4+24)
	tid[0] = protoISCSI
	binary.BigEndian.PutUint16(tid[2:], 24)
	copy(tid[4:], c.InitiatorName)
	extra := make([]byte, 4)
	binary.BigEndian.PutUint32(extra, uint32(len(tid)))
	extra = append(extra, tid...)
	// The TransportID registers c on the issuing nexus' port (1); c logs
	// in through port 2, so register with ALL_TG_PT.
	good(t, f.prOut(a, saRegister, 0, 0, 0x5, flagSpecIPT|flagAllTgPt, extra))
	if v := f.readKeys(a); len(v.keys) != 2 {
		t.Fatalf("keys %+v", v)
	}
	// c is registered: it may reserve with the key.
	good(t, f.prOut(c, saReserve, prTypeWE, 0x5, 0, 0, nil))
	res := f.prIn(a, 3)
	good(t, res)
	if res.Data[8+12]&0x02 == 0 {
		t.Fatalf("ALL_TG_PT not reported: %x", res.Data)
	}
	// A malformed TransportID is refused.
	bad := append([]byte(nil), extra...)
	bad[4] = 0x04
	good(t, f.prOut(a, saRegister, 0, 0x5, 0, 0, nil))
	expect(t, f.prOut(a, saRegister, 0, 0, 0x6, flagSpecIPT, bad), StatusCheckCondition, 5, 0x26, 0)
}

func TestPRRegisterAndMove(t *testing.T) {
	f, a, b, _ := newPRFixture(t, nil)
	good(t, f.prOut(a, saRegister, 0, 0, 0xa, 0, nil))
	good(t, f.prOut(a, saReserve, prTypeEA, 0xa, 0, 0, nil))
	name := b.InitiatorName + ",i,0x" + hexISID(b.ISID)
	tid := make([]byte, 4+((len(name)+4)&^3))
	tid[0] = 0x40 | protoISCSI
	binary.BigEndian.PutUint16(tid[2:], uint16(len(tid)-4))
	copy(tid[4:], name)
	p := make([]byte, 24, 24+len(tid))
	binary.BigEndian.PutUint64(p[0:], 0xa)
	binary.BigEndian.PutUint64(p[8:], 0xb)
	p[17] = 0x02 // UNREG
	binary.BigEndian.PutUint16(p[18:], b.Port.RelativeID)
	binary.BigEndian.PutUint32(p[20:], uint32(len(tid)))
	p = append(p, tid...)
	good(t, f.run(a, 0, prOutCDB(saRegisterMove, prTypeEA, len(p)), p))
	if k, typ := f.readReservation(a); k != 0xb || typ != prTypeEA {
		t.Fatalf("reservation %x type %d", k, typ)
	}
	if !f.canWrite(b) || f.canRead(a) {
		t.Fatal("access after move wrong")
	}
	if v := f.readKeys(b); len(v.keys) != 1 || v.keys[0] != 0xb {
		t.Fatalf("keys %+v", v)
	}
}

func TestPRPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lu0.pr")
	dev := newMem(t, testBlocks, nil)
	f := newFixture(t, dev, nil, func(o *LUOptions) { o.PRStore = FilePRStore(path) })
	a := nexus("iqn.2026-01.io.lunway:a", 1, 1)
	b := nexus("iqn.2026-01.io.lunway:b", 2, 1)
	f.ready(a)
	f.ready(b)
	good(t, f.prOut(a, saRegister, 0, 0, 0xa, flagAPTPL, nil))
	good(t, f.prOut(b, saRegister, 0, 0, 0xb, flagAPTPL, nil))
	good(t, f.prOut(a, saReserve, prTypeWERO, 0xa, 0, 0, nil))
	res := f.prIn(a, 2)
	if res.Data[2]&0x01 == 0 || res.Data[3]&0x01 == 0 {
		t.Fatalf("PTPL_C/PTPL_A not set: %x", res.Data)
	}
	gen := f.readKeys(a).gen

	// Simulated restart: a new Target and LU over the same device and store.
	f2 := newFixture(t, dev, nil, func(o *LUOptions) { o.PRStore = FilePRStore(path) })
	a2 := nexus(a.InitiatorName, 1, 1)
	c := nexus("iqn.2026-01.io.lunway:c", 3, 1)
	f2.ready(a2)
	f2.ready(c)
	if k, typ := f2.readReservation(a2); k != 0xa || typ != prTypeWERO {
		t.Fatalf("restored reservation %x type %d", k, typ)
	}
	if v := f2.readKeys(a2); len(v.keys) != 2 || v.gen != gen {
		t.Fatalf("restored keys %+v, generation before %d", v, gen)
	}
	if f2.canWrite(c) || !f2.canWrite(a2) {
		t.Fatal("restored reservation not enforced")
	}
	// APTPL=0 on the next REGISTER: nothing survives the next restart.
	good(t, f2.prOut(a2, saRegister, 0, 0xa, 0xa, 0, nil))
	f3 := newFixture(t, dev, nil, func(o *LUOptions) { o.PRStore = FilePRStore(path) })
	f3.ready(a2)
	if v := f3.readKeys(a2); len(v.keys) != 0 {
		t.Fatalf("keys survived with APTPL=0: %+v", v)
	}
}

func TestPRStoreCorrupt(t *testing.T) {
	for _, data := range []string{
		`{`,
		`{"version":2}`,
		`{"version":1,"aptpl":true,"holder":3,"registrations":[]}`,
		`{"version":1,"aptpl":true,"holder":0,"type":2,"registrations":[{"key":1,"initiator":"x"}]}`,
		`{"version":1,"aptpl":true,"holder":-1,"registrations":[{"key":0,"initiator":"x"}]}`,
		`{"version":1,"aptpl":true,"holder":-1,"registrations":[{"key":1,"initiator":"x","isid":"zz"}]}`,
	} {
		if _, err := decodePRSnapshot([]byte(data)); err == nil {
			t.Errorf("%s: accepted", data)
		}
	}
	_, err := NewLU(LUOptions{Device: newMem(t, 64, nil), PRStore: memPRStore{data: []byte(`{`)}})
	if err == nil {
		t.Fatal("NewLU accepted corrupt PR state")
	}
}

type memPRStore struct{ data []byte }

func (s memPRStore) Load(context.Context) ([]byte, error) { return s.data, nil }
func (s memPRStore) Save(context.Context, []byte) error   { return nil }

func TestSCSI2Reservations(t *testing.T) {
	f, a, b, _ := newPRFixture(t, nil)
	reserve6 := []byte{0x16, 0, 0, 0, 0, 0}
	release6 := []byte{0x17, 0, 0, 0, 0, 0}
	good(t, f.run(a, 0, reserve6, nil))
	good(t, f.run(a, 0, reserve6, nil))
	expect(t, f.run(b, 0, reserve6, nil), StatusReservationConflict, 0, 0, 0)
	expect(t, f.run(b, 0, tur, nil), StatusReservationConflict, 0, 0, 0)
	good(t, f.run(b, 0, mustHex(t, "12 00 00 0024 00"), nil))
	good(t, f.run(b, 0, release6, nil)) // no-op
	expect(t, f.run(b, 0, read10, nil), StatusReservationConflict, 0, 0, 0)
	good(t, f.run(a, 0, read10, nil))
	good(t, f.run(a, 0, release6, nil))
	good(t, f.run(b, 0, read10, nil))
	// RESERVE (10), then the holder's nexus is lost.
	good(t, f.run(a, 0, []byte{0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil))
	expect(t, f.run(b, 0, read10, nil), StatusReservationConflict, 0, 0, 0)
	f.tg.NexusLost(a)
	good(t, f.run(b, 0, read10, nil))
	// LU reset clears it too.
	good(t, f.run(b, 0, reserve6, nil))
	f.tg.ManageTask(t.Context(), TMFRequest{Function: TMFLogicalUnitReset, Nexus: b})
	f.ready(a)
	good(t, f.run(a, 0, read10, nil))
}

func TestFilePRStore(t *testing.T) {
	dir := t.TempDir()
	s := FilePRStore(filepath.Join(dir, "pr.json"))
	data, err := s.Load(t.Context())
	if err != nil || data != nil {
		t.Fatalf("missing file: %q, %v", data, err)
	}
	for _, v := range []string{`{"version":1}`, `{"version":1,"aptpl":true}`} {
		if err := s.Save(t.Context(), []byte(v)); err != nil {
			t.Fatal(err)
		}
		got, err := s.Load(t.Context())
		if err != nil || string(got) != v {
			t.Fatalf("load %q, %v; want %q", got, err, v)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Fatalf("directory holds %d entries (%v): temp files left behind", len(entries), err)
	}
	// A store whose directory is gone fails the Save (and so the PR OUT).
	bad := FilePRStore(filepath.Join(dir, "missing", "pr.json"))
	if err := bad.Save(t.Context(), []byte("{}")); err == nil {
		t.Fatal("save into a missing directory succeeded")
	}
	f := newFixture(t, nil, nil, func(o *LUOptions) { o.PRStore = bad })
	n := nexus("iqn.2026-01.io.lunway:a", 1, 1)
	f.ready(n)
	expect(t, f.prOut(n, saRegister, 0, 0, 0xa, flagAPTPL, nil), StatusCheckCondition, 5, 0x55, 0x04)
	if v := f.readKeys(n); len(v.keys) != 0 || v.gen != 0 {
		t.Fatalf("failed save left state behind: %+v", v)
	}
}

func TestPRPreemptAndAbortAbortsTasks(t *testing.T) {
	dev := &stuckDev{Device: newMem(t, testBlocks, nil), release: make(chan struct{}), entered: make(chan struct{})}
	f := newFixture(t, dev, &TargetOptions{AbortWait: 50 * time.Millisecond}, nil)
	a := nexus("iqn.2026-01.io.lunway:a", 1, 1)
	b := nexus("iqn.2026-01.io.lunway:b", 2, 1)
	f.ready(a)
	f.ready(b)
	good(t, f.prOut(a, saRegister, 0, 0, 0xa, 0, nil))
	good(t, f.prOut(b, saRegister, 0, 0, 0xb, 0, nil))
	good(t, f.prOut(b, saReserve, prTypeWE, 0xb, 0, 0, nil))
	task := f.tg.Begin(context.Background(), &Command{Nexus: b, LUN: 0, CDB: mustHex(t, "28 00 00000000 00 0001 00 000000000000"), Tag: 9})
	done := make(chan Result, 1)
	go func() { done <- task.Execute() }()
	<-dev.entered
	good(t, f.prOut(a, saPreemptAbort, prTypeEA, 0xa, 0xb, 0, nil))
	if !errors.Is(context.Cause(task.Context()), errTaskAborted) {
		t.Fatal("preempted nexus' task not aborted")
	}
	close(dev.release)
	if res := <-done; !res.Aborted {
		t.Fatalf("result %+v", res)
	}
	task.End()
	if k, typ := f.readReservation(a); k != 0xa || typ != prTypeEA {
		t.Fatalf("reservation %x type %d", k, typ)
	}
	expect(t, f.run(b, 0, tur, nil), StatusCheckCondition, 6, 0x2a, 0x05)
	expect(t, f.run(b, 0, read10, nil), StatusReservationConflict, 0, 0, 0)
}
