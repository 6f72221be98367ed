package scsi

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/lunway/lunway/blockdev/mem"
)

// cmdCase is one command through Target.Begin/Execute: CDB hex in,
// status, sense and data out. Cases of one table run in order on one
// fixture, so that a WRITE can be followed by the READ that checks it.
type cmdCase struct {
	name string
	cdb  string // hex; spaces ignored
	out  []byte // data-out
	st   Status
	key  uint8
	asc  uint16 // ASC<<8 | ASCQ
	// sks, when set, is the expected sense-key specific field (hex, 3 bytes).
	sks string
	// data, when set, is the expected data-in (hex), or its prefix when
	// prefix is set.
	data   string
	prefix bool
	// dataLen, when >= 0 with data empty, is the expected data-in length.
	dataLen int
}

func runCases(t *testing.T, f *fixture, n *Nexus, cases []cmdCase) {
	t.Helper()
	for _, c := range cases {
		res := f.run(n, 0, mustHex(t, c.cdb), c.out)
		if res.Status != c.st {
			s, _ := ParseSense(res.Sense)
			t.Errorf("%s: status %#x (sense %x/%02x/%02x), want %#x", c.name, res.Status, s.Key, s.ASC, s.ASCQ, c.st)
			continue
		}
		if c.st == StatusCheckCondition {
			s, ok := ParseSense(res.Sense)
			if !ok {
				t.Errorf("%s: bad sense %x", c.name, res.Sense)
				continue
			}
			if s.Key != c.key || uint16(s.ASC)<<8|uint16(s.ASCQ) != c.asc {
				t.Errorf("%s: sense %x/%02x/%02x, want %x/%04x", c.name, s.Key, s.ASC, s.ASCQ, c.key, c.asc)
			}
			if c.sks != "" && fmt.Sprintf("%06x", s.SKS) != c.sks {
				t.Errorf("%s: SKS %06x, want %s", c.name, s.SKS, c.sks)
			}
		}
		if c.data != "" {
			want := mustHex(t, c.data)
			got := res.Data
			if c.prefix && len(got) > len(want) {
				got = got[:len(want)]
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s: data\n got %x\nwant %x", c.name, got, want)
			}
		} else if c.dataLen >= 0 && c.dataLen != len(res.Data) && c.st == StatusGood {
			t.Errorf("%s: %d bytes of data, want %d", c.name, len(res.Data), c.dataLen)
		}
	}
}

func TestCommands(t *testing.T) {
	f := newFixture(t, nil, nil, nil)
	n := nexus("iqn.2026-01.io.lunway:init", 1, 1)
	f.ready(n)
	blk := pattern(512, 1)
	blk2 := pattern(1024, 9)
	runCases(t, f, n, []cmdCase{
		{name: "TUR", cdb: "00 0000000000"},
		{name: "unknown opcode", cdb: "02 0000000000", st: StatusCheckCondition, key: 5, asc: 0x2000},
		{name: "TUR NACA", cdb: "00 0000000004", st: StatusCheckCondition, key: 5, asc: 0x2400, sks: "ca0005"},
		{name: "TUR LINK", cdb: "00 0000000001", st: StatusCheckCondition, key: 5, asc: 0x2400, sks: "c80005"},
		{name: "TUR vendor control bits ignored", cdb: "00 00000000c0"},
		{name: "TUR reserved byte", cdb: "00 0010000000", st: StatusCheckCondition, key: 5, asc: 0x2400, sks: "cc0002"},
		{name: "INQUIRY standard", cdb: "12 00 00 0024 00", data: "00 00 06 12 5b 08 00 02" + hex.EncodeToString([]byte("LUNWAY  VIRTUAL-DISK    0001"))},
		{name: "INQUIRY short alloc", cdb: "12 00 00 0004 00", data: "00000612"},
		{name: "INQUIRY page without EVPD", cdb: "12 00 80 00ff 00", st: StatusCheckCondition, key: 5, asc: 0x2400, sks: "cf0002"},
		{name: "INQUIRY CMDDT", cdb: "12 02 00 00ff 00", st: StatusCheckCondition, key: 5, asc: 0x2400, sks: "c90001"},
		{name: "VPD supported", cdb: "12 01 00 00ff 00", data: "00 00 0006 00 80 83 b0 b1 b2"},
		{name: "VPD serial", cdb: "12 01 80 00ff 00", data: "00 80 0006" + hex.EncodeToString([]byte("SN0001"))},
		{name: "VPD unknown", cdb: "12 01 c0 00ff 00", st: StatusCheckCondition, key: 5, asc: 0x2400},
		{name: "VPD block limits", cdb: "12 01 b0 00ff 00", data: "00 b0 003c 01 40 0008 00010000 00000800 00010000 00100000 00000100 00000008 80000000 0000000000100000", prefix: true},
		{name: "VPD characteristics", cdb: "12 01 b1 00ff 00", data: "00 b1 003c 0001", prefix: true},
		{name: "VPD provisioning", cdb: "12 01 b2 00ff 00", data: "00 b2 0004 00 e4 02 00"},
		{name: "READ CAPACITY 10", cdb: "25 00 00000000 0000 00 00", data: "00001fff 00000200"},
		{name: "READ CAPACITY 10 LBA without PMI", cdb: "25 00 00000001 0000 00 00", st: StatusCheckCondition, key: 5, asc: 0x2400},
		{name: "READ CAPACITY 16", cdb: "9e 10 0000000000000000 00000020 00 00", data: "0000000000001fff 00000200 00 03 c000" + strings.Repeat("00", 16)},
		{name: "READ CAPACITY 16 short alloc", cdb: "9e 10 0000000000000000 0000000c 00 00", data: "0000000000001fff 00000200"},
		{name: "unknown service action", cdb: "9e 1f 0000000000000000 00000020 00 00", st: StatusCheckCondition, key: 5, asc: 0x2400, sks: "cc0001"},
		{name: "WRITE 10", cdb: "2a 00 00000010 00 0001 00", out: blk},
		{name: "READ 10", cdb: "28 00 00000010 00 0001 00", data: hex.EncodeToString(blk)},
		{name: "READ 6", cdb: "08 000010 01 00", data: hex.EncodeToString(blk)},
		{name: "READ 12", cdb: "a8 00 00000010 00000001 00 00", data: hex.EncodeToString(blk)},
		{name: "READ 16", cdb: "88 00 0000000000000010 00000001 00 00", data: hex.EncodeToString(blk)},
		{name: "WRITE 16 FUA", cdb: "8a 08 0000000000000020 00000002 00 00", out: blk2},
		{name: "READ 10 DPO FUA", cdb: "28 18 00000020 00 0002 00", data: hex.EncodeToString(blk2)},
		{name: "WRITE 12", cdb: "aa 00 00000030 00000001 00 00", out: blk},
		{name: "WRITE 6", cdb: "0a 000031 01 00", out: blk},
		{name: "READ 10 zero blocks", cdb: "28 00 00000000 00 0000 00", dataLen: 0},
		{name: "READ 10 zero blocks at end", cdb: "28 00 00002000 00 0000 00", dataLen: 0},
		{name: "READ 10 zero blocks past end", cdb: "28 00 00002001 00 0000 00", st: StatusCheckCondition, key: 5, asc: 0x2100},
		{name: "READ 10 beyond end", cdb: "28 00 00001fff 00 0002 00", st: StatusCheckCondition, key: 5, asc: 0x2100},
		{name: "READ 16 LBA -1", cdb: "88 00 ffffffffffffffff 00000001 00 00", st: StatusCheckCondition, key: 5, asc: 0x2100},
		{name: "READ 10 RDPROTECT", cdb: "28 20 00000000 00 0001 00", st: StatusCheckCondition, key: 5, asc: 0x2400, sks: "cf0001"},
		{name: "WRITE 10 WRPROTECT", cdb: "2a 20 00000000 00 0001 00", out: blk, st: StatusCheckCondition, key: 5, asc: 0x2400},
		{name: "WRITE 10 short data-out writes the blocks sent", cdb: "2a 00 00000050 00 0002 00", out: blk},
		{name: "READ 10 after short data-out", cdb: "28 00 00000050 00 0002 00", data: hex.EncodeToString(blk) + strings.Repeat("00", 512)},
		{name: "WRITE 10 beyond end", cdb: "2a 00 00001fff 00 0002 00", out: blk2, st: StatusCheckCondition, key: 5, asc: 0x2100},
		{name: "WRITE AND VERIFY 10", cdb: "2e 02 00000040 00 0001 00", out: blk},
		{name: "WRITE AND VERIFY 16 bad BYTCHK", cdb: "8e 04 0000000000000040 00000001 00 00", out: blk, st: StatusCheckCondition, key: 5, asc: 0x2400},
		{name: "VERIFY 10 no compare", cdb: "2f 00 00000040 00 0001 00"},
		{name: "VERIFY 10 compare", cdb: "2f 02 00000040 00 0001 00", out: blk},
		{name: "VERIFY 10 mismatch", cdb: "2f 02 00000040 00 0001 00", out: pattern(512, 1)[:0:0], st: StatusCheckCondition, key: 5, asc: 0x2400},
		{name: "VERIFY 16 single block", cdb: "8f 06 0000000000000030 00000002 00 00", out: blk},
		{name: "VERIFY 12 beyond end", cdb: "af 00 00001fff 00000002 00 00", st: StatusCheckCondition, key: 5, asc: 0x2100},
		{name: "VERIFY 10 VRPROTECT", cdb: "2f 20 00000040 00 0001 00", st: StatusCheckCondition, key: 5, asc: 0x2400},
		{name: "SYNCHRONIZE CACHE 10", cdb: "35 00 00000000 00 0000 00"},
		{name: "SYNCHRONIZE CACHE 16 IMMED", cdb: "91 02 0000000000000000 00000010 00 00"},
		{name: "SYNCHRONIZE CACHE 10 beyond end", cdb: "35 00 00001fff 00 0002 00", st: StatusCheckCondition, key: 5, asc: 0x2100},
		{name: "PRE-FETCH 10", cdb: "34 00 00000000 00 0010 00"},
		{name: "PRE-FETCH 16 beyond end", cdb: "90 00 0000000000002000 00000001 00 00", st: StatusCheckCondition, key: 5, asc: 0x2100},
		{name: "REPORT LUNS", cdb: "a0 00 00 000000 00000010 00 00", data: "00000008 00000000 0000000000000000"},
		{name: "REPORT LUNS well-known", cdb: "a0 00 01 000000 00000010 00 00", data: "00000000 00000000"},
		{name: "REPORT LUNS bad select", cdb: "a0 00 03 000000 00000010 00 00", st: StatusCheckCondition, key: 5, asc: 0x2400},
		{name: "REPORT LUNS short alloc", cdb: "a0 00 00 000000 00000008 00 00", st: StatusCheckCondition, key: 5, asc: 0x2400},
		{name: "REQUEST SENSE fixed", cdb: "03 00 0000 12 00", data: "700000000000000a00000000000000000000"},
		{name: "REQUEST SENSE descriptor", cdb: "03 01 0000 12 00", data: "7200000000000000"},
		{name: "START STOP UNIT start", cdb: "1b 00 0000 01 00"},
		{name: "START STOP UNIT bad power condition", cdb: "1b 00 0000 40 00", st: StatusCheckCondition, key: 5, asc: 0x2400},
		{name: "PREVENT", cdb: "1e 00 0000 01 00"},
		{name: "eject while prevented", cdb: "1b 00 0000 02 00", st: StatusCheckCondition, key: 5, asc: 0x5302},
		{name: "ALLOW", cdb: "1e 00 0000 00 00"},
		{name: "eject", cdb: "1b 00 0000 02 00"},
		{name: "PREVENT changer", cdb: "1e 00 0000 02 00", st: StatusCheckCondition, key: 5, asc: 0x2400},
		{name: "SEND DIAGNOSTIC self-test", cdb: "1d 04 00 0000 00"},
		{name: "SEND DIAGNOSTIC no self-test", cdb: "1d 00 00 0000 00", st: StatusCheckCondition, key: 5, asc: 0x2400},
		{name: "READ DEFECT DATA", cdb: "37 00 18 00000000 0004 00", data: "00180000"},
		{name: "RSTMF", cdb: "a3 0d 00 000000 00000004 00 00", data: "de070000"},
		{name: "RSTMF extended", cdb: "a3 0d 80 000000 00000010 00 00", data: "de07000c" + strings.Repeat("00", 12)},
		{name: "RSTMF short alloc", cdb: "a3 0d 00 000000 00000003 00 00", st: StatusCheckCondition, key: 5, asc: 0x2400},
		{name: "RSOC READ 10", cdb: "a3 0c 01 28 0000 00000100 00 00", data: "0003000a 28fe ffffffff 3f ffff 00"},
		{name: "RSOC READ CAPACITY 16", cdb: "a3 0c 02 9e 0010 00000100 00 00", data: "00030010 9e10 ffffffffffffffff ffffffff 01 00"},
		{name: "RSOC not supported", cdb: "a3 0c 01 02 0000 00000100 00 00", data: "00010000"},
		{name: "RSOC opcode with SAs as plain", cdb: "a3 0c 01 9e 0000 00000100 00 00", st: StatusCheckCondition, key: 5, asc: 0x2400},
		{name: "RSOC timeouts", cdb: "a3 0c 81 00 0000 00000100 00 00", data: "0083 0006 0000000000 00 000a 0000 00000001 00000002"},
		{name: "MODE SENSE saved", cdb: "1a 00 c8 00 ff 00", st: StatusCheckCondition, key: 5, asc: 0x3900},
		{name: "MODE SENSE unknown page", cdb: "1a 00 19 00 ff 00", st: StatusCheckCondition, key: 5, asc: 0x2400},
		{name: "MODE SENSE caching", cdb: "1a 08 08 00 ff 00", data: "17 00 10 00 0812 04" + strings.Repeat("00", 17)},
		{name: "MODE SENSE 10 control changeable", cdb: "5a 08 4a 00 000000 00ff 00", data: "0012 00 10 00 00 0000 0a0a 04 00 08 40 00000000 0000"},
		{name: "MODE SENSE 6 block descriptor", cdb: "1a 00 08 00 ff 00", data: "1f 00 10 08 00002000 00 000200 0812", prefix: true},
		{name: "MODE SENSE 10 LLBAA", cdb: "5a 10 08 00 000000 00ff 00", data: "002a 00 10 01 00 0010 0000000000002000 00000000 00000200 0812", prefix: true},
		{name: "MODE SELECT SP", cdb: "15 11 0000 00 00", st: StatusCheckCondition, key: 5, asc: 0x2400},
		{name: "GET LBA STATUS", cdb: "9e 12 0000000000000000 00000028 00 00", data: "00000024 00000000 0000000000000000 00000080 00000000 0000000000000080 00001f80 01000000"},
		{name: "GET LBA STATUS beyond end", cdb: "9e 12 0000000000002000 00000020 00 00", st: StatusCheckCondition, key: 5, asc: 0x2100},
	})
}

func TestVerifyMiscompare(t *testing.T) {
	f := newFixture(t, nil, nil, nil)
	n := nexus("iqn.2026-01.io.lunway:init", 1, 1)
	f.ready(n)
	blk := pattern(1024, 3)
	blk[600] ^= 0x01 // the two blocks differ at byte 88
	good(t, f.run(n, 0, mustHex(t, "2a 00 00000100 00 0002 00"), blk))
	bad := bytes.Clone(blk)
	bad[700] ^= 0xff
	s := expect(t, f.run(n, 0, mustHex(t, "2f 02 00000100 00 0002 00"), bad), StatusCheckCondition, 0xe, 0x1d, 0)
	if !s.InfoValid || s.Info != 700 {
		t.Fatalf("information %d (valid %v), want 700", s.Info, s.InfoValid)
	}
	// BYTCHK 11b: the one block is compared with each block.
	s = expect(t, f.run(n, 0, mustHex(t, "2f 06 00000100 00 0002 00"), blk[:512]), StatusCheckCondition, 0xe, 0x1d, 0)
	if s.Info != 600 {
		t.Fatalf("information %d", s.Info)
	}
}

func TestWriteSameAndUnmap(t *testing.T) {
	f := newFixture(t, nil, nil, nil)
	n := nexus("iqn.2026-01.io.lunway:init", 1, 1)
	f.ready(n)
	blk := pattern(512, 5)
	// WRITE SAME 10 with a pattern over 300 blocks (crosses mem chunks).
	good(t, f.run(n, 0, mustHex(t, "41 00 00000100 00 012c 00"), blk))
	res := f.run(n, 0, mustHex(t, "28 00 00000100 00 012c 00"), nil)
	good(t, res)
	for i := 0; i < 300; i++ {
		if !bytes.Equal(res.Data[i*512:(i+1)*512], blk) {
			t.Fatalf("block %d differs", i)
		}
	}
	// WRITE SAME 16 NDOB UNMAP deallocates.
	good(t, f.run(n, 0, mustHex(t, "93 09 0000000000000100 0000012c 00 00"), nil))
	res = f.run(n, 0, mustHex(t, "28 00 00000100 00 012c 00"), nil)
	if !allZero(res.Data) {
		t.Fatal("not zero after WRITE SAME NDOB")
	}
	cases := []cmdCase{
		{name: "WRITE SAME 0 blocks (WSNZ)", cdb: "41 00 00000000 00 0000 00", out: blk, st: StatusCheckCondition, key: 5, asc: 0x2400},
		{name: "WRITE SAME 0 blocks past end", cdb: "41 00 00002001 00 0000 00", out: blk, st: StatusCheckCondition, key: 5, asc: 0x2100},
		{name: "WRITE SAME ANCHOR", cdb: "41 18 00000000 00 0001 00", out: blk, st: StatusCheckCondition, key: 5, asc: 0x2400, sks: "cc0001"},
		{name: "WRITE SAME no data", cdb: "41 00 00000000 00 0001 00", st: StatusCheckCondition, key: 5, asc: 0x2400},
		{name: "WRITE SAME beyond end", cdb: "93 00 0000000000001fff 00000002 00 00", out: blk, st: StatusCheckCondition, key: 5, asc: 0x2100},
		{name: "UNMAP empty", cdb: "42 00 00000000 00 0000 00"},
		{name: "UNMAP ANCHOR", cdb: "42 01 00000000 00 0018 00", out: mustHex(t, "0016 0010 00000000 0000000000000000 00000001 00000000"), st: StatusCheckCondition, key: 5, asc: 0x2400},
		{name: "UNMAP short list", cdb: "42 00 00000000 00 0004 00", out: mustHex(t, "00020000"), st: StatusCheckCondition, key: 5, asc: 0x1a00},
		{name: "UNMAP beyond end", cdb: "42 00 00000000 00 0018 00", out: mustHex(t, "0016 0010 00000000 0000000000001fff 00000002 00000000"), st: StatusCheckCondition, key: 5, asc: 0x2100},
		{name: "UNMAP zero blocks", cdb: "42 00 00000000 00 0018 00", out: mustHex(t, "0016 0010 00000000 0000000000000000 00000000 00000000")},
		{name: "UNMAP one range", cdb: "42 00 00000000 00 0018 00", out: mustHex(t, "0016 0010 00000000 0000000000000010 00000001 00000000")},
	}
	runCases(t, f, n, cases)
	good(t, f.run(n, 0, mustHex(t, "2a 00 00000010 00 0001 00"), blk))
	good(t, f.run(n, 0, mustHex(t, "42 00 00000000 00 0018 00"), mustHex(t, "0016 0010 00000000 0000000000000010 00000001 00000000")))
	res = f.run(n, 0, mustHex(t, "28 00 00000010 00 0001 00"), nil)
	if !allZero(res.Data) {
		t.Fatal("block not zero after UNMAP")
	}
}

func TestUnmapDescriptorLimit(t *testing.T) {
	f := newFixture(t, nil, nil, func(o *LUOptions) { o.MaxUnmapBlockDescriptors = 2 })
	n := nexus("iqn.2026-01.io.lunway:init", 1, 1)
	f.ready(n)
	list := mustHex(t, "0036 0030 00000000"+strings.Repeat("0000000000000000 00000001 00000000", 3))
	expect(t, f.run(n, 0, mustHex(t, "42 00 00000000 00 0038 00"), list), StatusCheckCondition, 5, 0x26, 0)
}

func TestReadOnlyAndSWP(t *testing.T) {
	dev := newMem(t, testBlocks, &mem.Options{ReadOnly: true})
	f := newFixture(t, dev, nil, nil)
	n := nexus("iqn.2026-01.io.lunway:init", 1, 1)
	f.ready(n)
	blk := pattern(512, 1)
	expect(t, f.run(n, 0, mustHex(t, "2a 00 00000000 00 0001 00"), blk), StatusCheckCondition, 7, 0x27, 0)
	res := f.run(n, 0, mustHex(t, "1a 00 3f 00 ff 00"), nil)
	good(t, res)
	if res.Data[2]&0x80 == 0 {
		t.Fatal("WP not set for read-only device")
	}

	f = newFixture(t, nil, nil, nil)
	f.ready(n)
	// MODE SELECT: control page with SWP=1.
	ctl := mustHex(t, "00000000 0a0a 00 10 08 00 0000 ffff 0000")
	good(t, f.run(n, 0, mustHex(t, "15 10 0000 10 00"), ctl))
	expect(t, f.run(n, 0, mustHex(t, "2a 00 00000000 00 0001 00"), blk), StatusCheckCondition, 7, 0x27, 2)
	expect(t, f.run(n, 0, mustHex(t, "41 00 00000000 00 0001 00"), blk), StatusCheckCondition, 7, 0x27, 2)
	// LU reset returns mode pages to defaults.
	if r := f.tg.ManageTask(t.Context(), TMFRequest{Function: TMFLogicalUnitReset, Nexus: n}); r != TMFFunctionComplete {
		t.Fatal(r)
	}
	f.ready(n)
	good(t, f.run(n, 0, mustHex(t, "2a 00 00000000 00 0001 00"), blk))
}

func TestModeSelect(t *testing.T) {
	f := newFixture(t, nil, nil, nil)
	a := nexus("iqn.2026-01.io.lunway:a", 1, 1)
	b := nexus("iqn.2026-01.io.lunway:b", 2, 1)
	f.ready(a)
	f.ready(b)
	cases := []cmdCase{
		// Header + caching page with WCE=0.
		{name: "WCE off", cdb: "15 10 0000 18 00", out: mustHex(t, "00000000 0812 00"+strings.Repeat("00", 17))},
		{name: "caching RCD not changeable", cdb: "15 10 0000 18 00", out: mustHex(t, "00000000 0812 01"+strings.Repeat("00", 17)), st: StatusCheckCondition, key: 5, asc: 0x2600, sks: "880006"},
		{name: "bad page length", cdb: "15 10 0000 18 00", out: mustHex(t, "00000000 0813 00"+strings.Repeat("00", 17)), st: StatusCheckCondition, key: 5, asc: 0x2600, sks: "800005"},
		{name: "unknown page", cdb: "15 10 0000 08 00", out: mustHex(t, "00000000 1902 0000"), st: StatusCheckCondition, key: 5, asc: 0x2600},
		{name: "truncated page", cdb: "15 10 0000 08 00", out: mustHex(t, "00000000 0812 0000"), st: StatusCheckCondition, key: 5, asc: 0x1a00},
		{name: "PF=0 with pages", cdb: "15 00 0000 18 00", out: mustHex(t, "00000000 0812 00"+strings.Repeat("00", 17)), st: StatusCheckCondition, key: 5, asc: 0x2400},
		{name: "block descriptor", cdb: "15 10 0000 0c 00", out: mustHex(t, "00000008 00000000 00 000200")},
		{name: "block descriptor wrong size", cdb: "15 10 0000 0c 00", out: mustHex(t, "00000008 00000000 00 001000"), st: StatusCheckCondition, key: 5, asc: 0x2600},
		{name: "MODE SELECT 10 D_SENSE", cdb: "55 10 0000000000 0014 00", out: mustHex(t, "0000000000000000 0a0a 04 10 00 00 0000 ffff 0000")},
	}
	runCases(t, f, a, cases)
	res := f.run(a, 0, mustHex(t, "1a 08 08 00 ff 00"), nil)
	good(t, res)
	if res.Data[6]&0x04 != 0 {
		t.Fatal("WCE still set")
	}
	// D_SENSE=1: errors now come in descriptor format.
	res = f.run(a, 0, mustHex(t, "02 0000000000"), nil)
	if res.Sense[0] != 0x72 {
		t.Fatalf("sense %x not descriptor format", res.Sense)
	}
	// The other nexus sees MODE PARAMETERS CHANGED once.
	expect(t, f.run(b, 0, mustHex(t, "00 0000000000"), nil), StatusCheckCondition, 6, 0x2a, 0x01)
	good(t, f.run(b, 0, mustHex(t, "00 0000000000"), nil))
	// The nexus that changed them does not.
	good(t, f.run(a, 0, mustHex(t, "00 0000000000"), nil))
}

func TestNoLU(t *testing.T) {
	f := newFixture(t, nil, nil, nil)
	n := nexus("iqn.2026-01.io.lunway:init", 1, 1)
	res := f.run(n, 5, mustHex(t, "12 00 00 0024 00"), nil)
	good(t, res)
	if res.Data[0] != 0x7f {
		t.Fatalf("peripheral byte %#x", res.Data[0])
	}
	expect(t, f.run(n, 5, mustHex(t, "00 0000000000"), nil), StatusCheckCondition, 5, 0x25, 0)
	res = f.run(n, 5, mustHex(t, "03 00 0000 12 00"), nil)
	good(t, res)
	if s, _ := ParseSense(res.Data); s.ASC != 0x25 {
		t.Fatalf("REQUEST SENSE data %x", res.Data)
	}
	good(t, f.run(n, 5, mustHex(t, "a0 00 00 000000 00000010 00 00"), nil))
}

func TestReportSupportedOpcodesAll(t *testing.T) {
	f := newFixture(t, nil, nil, nil)
	n := nexus("iqn.2026-01.io.lunway:init", 1, 1)
	f.ready(n)
	res := f.run(n, 0, mustHex(t, "a3 0c 00 00 0000 00010000 00 00"), nil)
	good(t, res)
	d := res.Data
	if int(be32(d)) != len(d)-4 || (len(d)-4)%8 != 0 {
		t.Fatalf("bad length %d for %d bytes", be32(d), len(d))
	}
	seen := map[string]bool{}
	for off := 4; off < len(d); off += 8 {
		e := d[off : off+8]
		op, sa, servactv, cdbLen := e[0], be16(e[2:4]), e[5]&1 != 0, be16(e[6:8])
		seen[fmt.Sprintf("%02x/%d/%v", op, sa, servactv)] = true
		// Each listed command must be answered by the one-command form
		// with the same CDB length, and be accepted by the dispatcher's
		// opcode check.
		opts := "01"
		if servactv {
			opts = "02"
		}
		one := f.run(n, 0, mustHex(t, fmt.Sprintf("a3 0c %s %02x %04x 00000100 00 00", opts, op, sa)), nil)
		good(t, one)
		if one.Data[1]&0x07 != 3 || be16(one.Data[2:4]) != cdbLen || one.Data[4] != op {
			t.Errorf("opcode %02x/%x: one-command data %x", op, sa, one.Data)
		}
	}
	for _, want := range []string{"28/0/false", "2a/0/false", "9e/16/true", "a3/12/true", "42/0/false", "5f/7/true", "89/0/false"} {
		if !seen[want] {
			t.Errorf("%s missing from all-commands list", want)
		}
	}
	// No ALUA configured: REPORT TARGET PORT GROUPS is not listed.
	if seen["a3/10/true"] {
		t.Error("RTPG listed without ALUA")
	}
}

func TestCommandTable(t *testing.T) {
	ct := defaultTable()
	for _, o := range ct.all {
		want := map[byte]int{0: 6, 1: 10, 2: 10, 4: 16, 5: 12}[o.op>>5]
		if o.cdbLen() != want {
			t.Errorf("%s: CDB length %d, group says %d", o.name, o.cdbLen(), want)
		}
		if o.usage[len(o.usage)-1] != 0 {
			t.Errorf("%s: control byte usage %#x", o.name, o.usage[len(o.usage)-1])
		}
		if o.hasSA && o.usage[1]&0x1f != 0x1f {
			t.Errorf("%s: service action bits not in usage", o.name)
		}
		if o.dir == dirIn && o.handle == nil {
			t.Errorf("%s: no handler", o.name)
		}
	}
	if len(ct.all) < 60 {
		t.Fatalf("only %d commands", len(ct.all))
	}
}

func TestMaxTransferLength(t *testing.T) {
	f := newFixture(t, nil, nil, func(o *LUOptions) { o.MaxTransferBytes = 64 << 10 })
	n := nexus("iqn.2026-01.io.lunway:init", 1, 1)
	f.ready(n)
	res := f.run(n, 0, mustHex(t, "12 01 b0 00ff 00"), nil)
	good(t, res)
	if got := be32(res.Data[8:12]); got != 128 {
		t.Fatalf("MAXIMUM TRANSFER LENGTH %d, want 128", got)
	}
	runCases(t, f, n, []cmdCase{
		{name: "READ 16 at max", cdb: "88 00 0000000000000000 00000080 00 00", dataLen: 128 * 512},
		{name: "READ 16 too long", cdb: "88 00 0000000000000000 00000081 00 00", st: StatusCheckCondition, key: 5, asc: 0x2400, sks: "c0000a"},
		{name: "WRITE 10 too long", cdb: "2a 00 00000000 00 0081 00", out: make([]byte, 129*512), st: StatusCheckCondition, key: 5, asc: 0x2400, sks: "c00007"},
	})
}
