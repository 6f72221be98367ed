package scsi

import (
	"bytes"
	"context"
	"encoding/binary"
	"sync"
	"testing"

	"github.com/lunway/lunway/blockdev"
)

// plainDev hides every optional capability of a Device, so that the
// device server must emulate COMPARE AND WRITE, WRITE SAME and copies.
type plainDev struct{ d blockdev.Device }

func (p plainDev) ReadAt(ctx context.Context, b []byte, off int64) error {
	return p.d.ReadAt(ctx, b, off)
}
func (p plainDev) WriteAt(ctx context.Context, b []byte, off int64, f blockdev.WriteFlags) error {
	return p.d.WriteAt(ctx, b, off, f)
}
func (p plainDev) Flush(ctx context.Context) error { return p.d.Flush(ctx) }
func (p plainDev) Info() blockdev.Info {
	i := p.d.Info()
	i.Thin = false
	return i
}
func (p plainDev) Close() error { return p.d.Close() }

func cawCDB(lba uint64, n byte) []byte {
	c := make([]byte, 16)
	c[0] = 0x89
	binary.BigEndian.PutUint64(c[2:], lba)
	c[13] = n
	return c
}

func TestCompareAndWrite(t *testing.T) {
	for _, emulated := range []bool{false, true} {
		name := "device"
		if emulated {
			name = "emulated"
		}
		t.Run(name, func(t *testing.T) {
			var dev blockdev.Device = newMem(t, testBlocks, nil)
			if emulated {
				dev = plainDev{dev}
			}
			f := newFixture(t, dev, nil, nil)
			n := nexus("iqn.2026-01.io.lunway:a", 1, 1)
			f.ready(n)
			old, neu := pattern(1024, 1), pattern(1024, 2)
			good(t, f.run(n, 0, mustHex(t, "2a 00 00000010 00 0002 00"), old))
			good(t, f.run(n, 0, cawCDB(0x10, 2), append(bytes.Clone(old), neu...)))
			res := f.run(n, 0, mustHex(t, "28 00 00000010 00 0002 00"), nil)
			if !bytes.Equal(res.Data, neu) {
				t.Fatal("COMPARE AND WRITE did not write")
			}
			// Miscompare: nothing written, offset of first difference.
			stale := bytes.Clone(old)
			s := expect(t, f.run(n, 0, cawCDB(0x10, 2), append(stale, old...)), StatusCheckCondition, 0xe, 0x1d, 0)
			if !s.InfoValid || s.Info != uint64(firstDiff(neu, old)) {
				t.Fatalf("information %d valid %v", s.Info, s.InfoValid)
			}
			res = f.run(n, 0, mustHex(t, "28 00 00000010 00 0002 00"), nil)
			if !bytes.Equal(res.Data, neu) {
				t.Fatal("miscompare wrote data")
			}
			runCases(t, f, n, []cmdCase{
				{name: "zero blocks", cdb: "89 00 0000000000000010 000000 00 00 00", out: []byte{}},
				{name: "beyond end", cdb: "89 00 0000000000001fff 000000 02 00 00", out: make([]byte, 2048), st: StatusCheckCondition, key: 5, asc: 0x2100},
				{name: "too long", cdb: "89 00 0000000000000000 000000 41 00 00", out: make([]byte, 2*65*512), st: StatusCheckCondition, key: 5, asc: 0x2400, sks: "c0000d"},
				{name: "wrong data-out size", cdb: "89 00 0000000000000010 000000 01 00 00", out: make([]byte, 512), st: StatusCheckCondition, key: 5, asc: 0x2400},
				{name: "WRPROTECT", cdb: "89 20 0000000000000010 000000 01 00 00", out: make([]byte, 1024), st: StatusCheckCondition, key: 5, asc: 0x2400},
			})
		})
	}
}

// TestCompareAndWriteRace has two nexuses race COMPARE AND WRITE on the
// same 8 blocks, each round from the same expected content, while a third
// writes them with a plain WRITE: at most one COMPARE AND WRITE wins each
// round, a round without a plain write has exactly one winner, and the
// blocks always hold one of the values written, whole.
func TestCompareAndWriteRace(t *testing.T) {
	for _, emulated := range []bool{false, true} {
		var dev blockdev.Device = newMem(t, testBlocks, nil)
		if emulated {
			dev = plainDev{dev}
		}
		f := newFixture(t, dev, nil, nil)
		a := nexus("iqn.2026-01.io.lunway:a", 1, 1)
		b := nexus("iqn.2026-01.io.lunway:b", 2, 1)
		w := nexus("iqn.2026-01.io.lunway:w", 3, 1)
		for _, n := range []*Nexus{a, b, w} {
			f.ready(n)
		}
		cur := make([]byte, 4096)
		good(t, f.run(a, 0, mustHex(t, "2a 00 00000000 00 0008 00"), cur))
		for round := 0; round < 100; round++ {
			next := [3][]byte{pattern(4096, byte(3*round+1)), pattern(4096, byte(3*round+2)), pattern(4096, byte(3*round+3))}
			withWriter := round%2 == 1
			var wg sync.WaitGroup
			var st [2]Status
			for i, n := range []*Nexus{a, b} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					st[i] = runCmd(f.tg, n, 0, cawCDB(0, 8), append(bytes.Clone(cur), next[i]...), AttrSimple).Status
				}()
			}
			if withWriter {
				wg.Add(1)
				go func() {
					defer wg.Done()
					runCmd(f.tg, w, 0, mustHex(t, "2a 00 00000000 00 0008 00"), next[2], AttrSimple)
				}()
			}
			wg.Wait()
			wins := 0
			for i := range st {
				switch st[i] {
				case StatusGood:
					wins++
				case StatusCheckCondition:
				default:
					t.Fatalf("round %d: status %#x", round, st[i])
				}
			}
			if wins > 1 || (!withWriter && wins != 1) {
				t.Fatalf("round %d (writer %v): %d winners", round, withWriter, wins)
			}
			res := f.run(a, 0, mustHex(t, "28 00 00000000 00 0008 00"), nil)
			whole := false
			for i, v := range next {
				if bytes.Equal(res.Data, v) && (i == 2 || st[i] == StatusGood) {
					whole = true
				}
			}
			if !whole {
				t.Fatalf("round %d: blocks hold no whole value written", round)
			}
			cur = res.Data
		}
	}
}

// xcopyParams builds an EXTENDED COPY parameter list with target
// descriptors for naas and one block→block segment per seg.
func xcopyParams(naas [][16]byte, segs [][5]uint64) []byte {
	p := make([]byte, 16)
	p[0] = 1 // list ID
	binary.BigEndian.PutUint16(p[2:], uint16(32*len(naas)))
	binary.BigEndian.PutUint32(p[8:], uint32(28*len(segs)))
	for _, naa := range naas {
		d := make([]byte, 32)
		d[0] = 0xe4
		d[4], d[5], d[7] = 0x01, 0x03, 16
		copy(d[8:], naa[:])
		d[30] = 0x02 // disk block length 512
		p = append(p, d...)
	}
	for _, s := range segs { // src idx, dst idx, blocks, src LBA, dst LBA
		d := make([]byte, 28)
		d[0] = 0x02
		binary.BigEndian.PutUint16(d[2:], 0x18)
		binary.BigEndian.PutUint16(d[4:], uint16(s[0]))
		binary.BigEndian.PutUint16(d[6:], uint16(s[1]))
		binary.BigEndian.PutUint16(d[10:], uint16(s[2]))
		binary.BigEndian.PutUint64(d[12:], s[3])
		binary.BigEndian.PutUint64(d[20:], s[4])
		p = append(p, d...)
	}
	return p
}

func xcopyCDB(plen int) []byte {
	c := make([]byte, 16)
	c[0] = 0x83
	binary.BigEndian.PutUint32(c[10:], uint32(plen))
	return c
}

func TestExtendedCopy(t *testing.T) {
	reg := NewRegistry()
	f := newFixture(t, nil, &TargetOptions{Registry: reg}, nil)
	// A second target in the same daemon, its LU without CopyRange.
	tg2 := NewTarget("iqn.2026-01.io.lunway:other", &TargetOptions{Registry: reg})
	lu2, err := NewLU(LUOptions{Device: plainDev{newMem(t, testBlocks, nil)}, SerialNumber: "OTHER"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tg2.AddLU(0, lu2); err != nil {
		t.Fatal(err)
	}
	n := nexus("iqn.2026-01.io.lunway:a", 1, 1)
	f.ready(n)
	src := pattern(300*512, 4)
	good(t, f.run(n, 0, mustHex(t, "2a 00 00000000 00 012c 00"), src))
	naas := [][16]byte{f.lu.NAA(), lu2.NAA()}
	// Within the LU and to the other target's LU.
	p := xcopyParams(naas, [][5]uint64{{0, 0, 300, 0, 1000}, {0, 1, 300, 0, 50}})
	if res := f.run(n, 0, xcopyCDB(len(p)), p); res.Status != StatusGood {
		si, _ := ParseSense(res.Sense)
		t.Fatalf("xcopy: %+v %06x", si, si.SKS)
	}
	res := f.run(n, 0, mustHex(t, "28 00 000003e8 00 012c 00"), nil)
	if !bytes.Equal(res.Data, src) {
		t.Fatal("copy within the LU differs")
	}
	got := make([]byte, len(src))
	if err := lu2.dev.ReadAt(t.Context(), got, 50*512); err != nil || !bytes.Equal(got, src) {
		t.Fatalf("copy to the other LU differs (%v)", err)
	}
	// COPY STATUS for list 1.
	res = f.run(n, 0, mustHex(t, "84 00 01 00000000000000 0000000c 00 00"), nil)
	good(t, res)
	if res.Data[4] != 0x01 || be16(res.Data[5:]) != 2 || be32(res.Data[8:]) != 2*300*512 {
		t.Fatalf("copy status %x", res.Data)
	}
	expect(t, f.run(n, 0, mustHex(t, "84 00 09 00000000000000 0000000c 00 00"), nil), StatusCheckCondition, 5, 0x24, 0)
	// OPERATING PARAMETERS.
	res = f.run(n, 0, mustHex(t, "84 03 00 00000000000000 00000100 00 00"), nil)
	good(t, res)
	if be16(res.Data[8:]) != xcopyMaxTargetDescs || be16(res.Data[10:]) != xcopyMaxSegmentDescs || res.Data[43] != 2 {
		t.Fatalf("operating parameters %x", res.Data)
	}

	unknown := [16]byte{0x60, 1, 2, 3}
	for _, c := range []struct {
		name     string
		p        []byte
		key      uint8
		asc, acq uint8
	}{
		{"unknown NAA", xcopyParams([][16]byte{unknown}, [][5]uint64{{0, 0, 1, 0, 1}}), 0xa, 0x0d, 0x02},
		{"bad index", xcopyParams(naas[:1], [][5]uint64{{0, 1, 1, 0, 1}}), 0xa, 0x0d, 0x02},
		{"beyond end", xcopyParams(naas[:1], [][5]uint64{{0, 0, 2, 0, testBlocks - 1}}), 0xa, 0, 0},
		{"too many targets", xcopyParams(make([][16]byte, xcopyMaxTargetDescs+1), nil), 5, 0x26, 0x06},
		{"list too long", xcopyParams(make([][16]byte, xcopyMaxTargetDescs+1), make([][5]uint64, xcopyMaxSegmentDescs+1)), 5, 0x1a, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			expect(t, f.run(n, 0, xcopyCDB(len(c.p)), c.p), StatusCheckCondition, c.key, c.asc, c.acq)
		})
	}
	bad := xcopyParams(naas[:1], [][5]uint64{{0, 0, 1, 0, 1}})
	bad[16] = 0xe0
	expect(t, f.run(n, 0, xcopyCDB(len(bad)), bad), StatusCheckCondition, 5, 0x26, 0x07)
	bad = xcopyParams(naas[:1], [][5]uint64{{0, 0, 1, 0, 1}})
	bad[16+32] = 0x0a
	expect(t, f.run(n, 0, xcopyCDB(len(bad)), bad), StatusCheckCondition, 5, 0x26, 0x09)
	// A registry refuses a second LU with the same NAA.
	lu3, _ := NewLU(LUOptions{Device: newMem(t, 64, nil), NAA: f.lu.NAA()})
	if err := tg2.AddLU(1, lu3); err == nil {
		t.Fatal("duplicate NAA accepted")
	}
}

func TestEmulatedWriteSame(t *testing.T) {
	f := newFixture(t, plainDev{newMem(t, testBlocks, nil)}, nil, nil)
	n := nexus("iqn.2026-01.io.lunway:a", 1, 1)
	f.ready(n)
	// Not thin: no UNMAP, no GET LBA STATUS, no VPD B2, no LBPME.
	expect(t, f.run(n, 0, mustHex(t, "42 00 00000000 00 0000 00"), nil), StatusCheckCondition, 5, 0x20, 0)
	expect(t, f.run(n, 0, mustHex(t, "9e 12 0000000000000000 00000020 00 00"), nil), StatusCheckCondition, 5, 0x24, 0)
	expect(t, f.run(n, 0, mustHex(t, "12 01 b2 00ff 00"), nil), StatusCheckCondition, 5, 0x24, 0)
	res := f.run(n, 0, mustHex(t, "9e 10 0000000000000000 00000020 00 00"), nil)
	if res.Data[14] != 0 {
		t.Fatalf("LBPME set on a thick LU: %x", res.Data)
	}
	// WRITE SAME with the UNMAP bit on a thick LU writes zeros (4 MiB:
	// several bounded chunks).
	good(t, f.run(n, 0, mustHex(t, "2a 00 00000000 00 0001 00"), pattern(512, 1)))
	good(t, f.run(n, 0, mustHex(t, "93 08 0000000000000000 00002000 00 00"), make([]byte, 512)))
	res = f.run(n, 0, mustHex(t, "28 00 00000000 00 0001 00"), nil)
	if !allZero(res.Data) {
		t.Fatal("not zeroed")
	}
}

func TestOrWrite(t *testing.T) {
	for _, emulated := range []bool{false, true} {
		var dev blockdev.Device = newMem(t, testBlocks, nil)
		if emulated {
			dev = plainDev{dev}
		}
		f := newFixture(t, dev, nil, nil)
		n := nexus("iqn.2026-01.io.lunway:a", 1, 1)
		f.ready(n)
		a, b := bytes.Repeat([]byte{0x0f}, 1024), bytes.Repeat([]byte{0x30}, 1024)
		good(t, f.run(n, 0, mustHex(t, "2a 00 00000008 00 0002 00"), a))
		good(t, f.run(n, 0, mustHex(t, "8b 08 0000000000000008 00000002 00 00"), b))
		res := f.run(n, 0, mustHex(t, "28 00 00000008 00 0002 00"), nil)
		if !bytes.Equal(res.Data, bytes.Repeat([]byte{0x3f}, 1024)) {
			t.Fatalf("emulated=%v: ORWRITE result %x...", emulated, res.Data[:8])
		}
		runCases(t, f, n, []cmdCase{
			{name: "ORWRITE beyond end", cdb: "8b 00 0000000000001fff 00000002 00 00", out: b, st: StatusCheckCondition, key: 5, asc: 0x2100},
			{name: "ORWRITE ORPROTECT", cdb: "8b 20 0000000000000000 00000001 00 00", out: b[:512], st: StatusCheckCondition, key: 5, asc: 0x2400},
			{name: "ORWRITE zero blocks", cdb: "8b 00 0000000000000000 00000000 00 00"},
			{name: "READ DEFECT DATA 12", cdb: "b7 18 00000000 00000008 00 00", data: "0018000000000000"},
		})
	}
}
