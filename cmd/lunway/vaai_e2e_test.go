package main

// Hypervisor-grade SCSI through the real daemon with the project's Go
// initiator: COMPARE AND WRITE races between sessions, the persistent
// reservation sequence of a Windows failover-cluster validation, and
// reservations across a daemon restart with and without APTPL.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lunway/lunway/target/initiator"
	"github.com/lunway/lunway/target/scsi"
)

const vaaiConfig = `
data_dir: {{DATA}}
log: {level: warn}
portal_groups: [{tag: 1, listen: ["127.0.0.1:{{PORT0}}"]}]
targets:
  - name: ` + e2eIQN + `
    luns:
      - {lun: 0, size: 64MiB, backend: {type: file, path: lun0.img}}
      - {lun: 1, size: 64MiB, backend: {type: blockmap, volume: vol1, store: {type: dir, path: store}}}
`

// session logs in as initiator name and clears the power-on unit attention.
func session(t *testing.T, d *proc, name string, lun uint64) *initiator.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := initiator.Dial(ctx, fmt.Sprintf("127.0.0.1:%d", d.ports[0]),
		&initiator.Options{TargetName: e2eIQN, InitiatorName: name})
	if err != nil {
		t.Fatalf("login as %s: %v", name, err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.ClearUnitAttentions(ctx, lun); err != nil {
		t.Fatal(err)
	}
	return s
}

func do(t *testing.T, s *initiator.Session, cmd *initiator.Command) *initiator.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := s.Do(ctx, cmd)
	if err != nil {
		t.Fatalf("CDB % x: %v", cmd.CDB, err)
	}
	return res
}

// compareAndWrite sends COMPARE AND WRITE of one 512-byte block at lba.
func compareAndWrite(t *testing.T, s *initiator.Session, lun, lba uint64, cmp, data []byte) *initiator.Result {
	cdb := make([]byte, 16)
	cdb[0] = 0x89
	binary.BigEndian.PutUint64(cdb[2:], lba)
	cdb[13] = 1
	return do(t, s, &initiator.Command{LUN: lun, CDB: cdb, Write: true, Data: append(append([]byte{}, cmp...), data...)})
}

func block(round, writer int) []byte {
	b := make([]byte, 512)
	for i := 0; i < len(b); i += 8 {
		binary.BigEndian.PutUint32(b[i:], uint32(round))
		binary.BigEndian.PutUint32(b[i+4:], uint32(writer))
	}
	return b
}

// TestCompareAndWriteRace: two sessions race COMPARE AND WRITE on one block
// for many rounds; exactly one wins each round and the block is never torn.
func TestCompareAndWriteRace(t *testing.T) {
	d := newDaemon(t, vaaiConfig, 1)
	d.start()
	for lun := uint64(0); lun < 2; lun++ {
		a := session(t, d, "iqn.2026-11.dev.lunway:node-a", lun)
		b := session(t, d, "iqn.2026-11.dev.lunway:node-b", lun)
		ctx := context.Background()
		if res, err := a.Write16(ctx, lun, 7, 512, block(0, 0), true); err != nil || res.Err() != nil {
			t.Fatalf("initial write: %v %v", err, res.Err())
		}
		cur := block(0, 0)
		const rounds = 200
		for r := 1; r <= rounds; r++ {
			var wg sync.WaitGroup
			results := make([]*initiator.Result, 2)
			for w, s := range []*initiator.Session{a, b} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[w] = compareAndWrite(t, s, lun, 7, cur, block(r, w+1))
				}()
			}
			wg.Wait()
			winner := -1
			for w, res := range results {
				switch {
				case res.Status == uint8(scsi.StatusGood):
					if winner >= 0 {
						t.Fatalf("LUN %d round %d: both sessions won", lun, r)
					}
					winner = w
				case res.Status == uint8(scsi.StatusCheckCondition):
					sd := res.SenseData()
					if sd.Key != 0x0e || sd.ASC != 0x1d {
						t.Fatalf("LUN %d round %d: loser got %v, want MISCOMPARE", lun, r, sd)
					}
				default:
					t.Fatalf("LUN %d round %d: status %#x", lun, r, res.Status)
				}
			}
			if winner < 0 {
				t.Fatalf("LUN %d round %d: nobody won", lun, r)
			}
			got := make([]byte, 512)
			if res, err := a.Read16(ctx, lun, 7, 512, got); err != nil || res.Err() != nil {
				t.Fatalf("read: %v", err)
			}
			if want := block(r, winner+1); !bytes.Equal(got, want) {
				t.Fatalf("LUN %d round %d: block holds % x..., want the winner's data", lun, r, got[:16])
			}
			cur = got
		}
	}
}

// Persistent reservation helpers (SPC-4 6.15, 6.16).
const (
	prRegister          = 0x00
	prReserve           = 0x01
	prClear             = 0x03
	prPreempt           = 0x04
	prRegisterIgnore    = 0x06
	prTypeWERO          = 0x05 // write exclusive, registrants only
	prInReadKeys        = 0x00
	prInReadReservation = 0x01
	prInReadFullStatus  = 0x03
	statusResvConflict  = 0x18
)

func prOut(t *testing.T, s *initiator.Session, lun uint64, sa, typ byte, key, sakey uint64, aptpl bool) *initiator.Result {
	t.Helper()
	param := make([]byte, 24)
	binary.BigEndian.PutUint64(param[0:], key)
	binary.BigEndian.PutUint64(param[8:], sakey)
	if aptpl {
		param[20] = 0x01
	}
	cdb := make([]byte, 10)
	cdb[0] = 0x5f
	cdb[1] = sa
	cdb[2] = typ
	binary.BigEndian.PutUint32(cdb[5:], uint32(len(param)))
	return do(t, s, &initiator.Command{LUN: lun, CDB: cdb, Write: true, Data: param})
}

func prIn(t *testing.T, s *initiator.Session, lun uint64, sa byte) []byte {
	t.Helper()
	cdb := make([]byte, 10)
	cdb[0] = 0x5e
	cdb[1] = sa
	binary.BigEndian.PutUint16(cdb[7:], 4096)
	res := do(t, s, &initiator.Command{LUN: lun, CDB: cdb, Read: true, ExpectedLen: 4096})
	if err := res.Err(); err != nil {
		t.Fatalf("PERSISTENT RESERVE IN %d: %v", sa, err)
	}
	return res.Data
}

func good(t *testing.T, what string, res *initiator.Result) {
	t.Helper()
	if err := res.Err(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func writeStatus(t *testing.T, s *initiator.Session, lun uint64) uint8 {
	t.Helper()
	res, err := s.Write16(context.Background(), lun, 100, 512, make([]byte, 512), false)
	if err != nil {
		t.Fatal(err)
	}
	if res.UnitAttention() {
		res, err = s.Write16(context.Background(), lun, 100, 512, make([]byte, 512), false)
		if err != nil {
			t.Fatal(err)
		}
	}
	return res.Status
}

// keys parses READ KEYS data.
func keys(data []byte) []uint64 {
	n := binary.BigEndian.Uint32(data[4:])
	var out []uint64
	for i := 8; i+8 <= 8+int(n) && i+8 <= len(data); i += 8 {
		out = append(out, binary.BigEndian.Uint64(data[i:]))
	}
	return out
}

// TestWindowsClusterReservations replays the persistent-reservation
// sequence of a Windows failover-cluster validation with two nodes.
func TestWindowsClusterReservations(t *testing.T) {
	d := newDaemon(t, vaaiConfig, 1)
	d.start()
	const lun = 0
	const ka, kb = 0xa1a1a1a1, 0xb2b2b2b2
	a := session(t, d, "iqn.1991-05.com.microsoft:node-a", lun)
	b := session(t, d, "iqn.1991-05.com.microsoft:node-b", lun)
	c := session(t, d, "iqn.1991-05.com.microsoft:outsider", lun)

	// Each node first drops whatever registration it may have.
	good(t, "A register-and-ignore 0", prOut(t, a, lun, prRegisterIgnore, 0, 0, 0, false))
	good(t, "B register-and-ignore 0", prOut(t, b, lun, prRegisterIgnore, 0, 0, 0, false))
	// Node A registers and clears everything.
	good(t, "A register", prOut(t, a, lun, prRegister, 0, 0, ka, false))
	good(t, "A clear", prOut(t, a, lun, prClear, 0, ka, 0, false))
	if k := keys(prIn(t, a, lun, prInReadKeys)); len(k) != 0 {
		t.Fatalf("keys after CLEAR: %x", k)
	}
	// Both register; A reserves write-exclusive, registrants only.
	good(t, "A register", prOut(t, a, lun, prRegister, 0, 0, ka, false))
	good(t, "B register", prOut(t, b, lun, prRegister, 0, 0, kb, false))
	good(t, "A reserve WERO", prOut(t, a, lun, prReserve, prTypeWERO, ka, 0, false))
	if st := writeStatus(t, b, lun); st != 0 {
		t.Fatalf("registrant B write under WERO: status %#x", st)
	}
	if st := writeStatus(t, c, lun); st != statusResvConflict {
		t.Fatalf("outsider write under WERO: status %#x, want RESERVATION CONFLICT", st)
	}
	// Node B preempts node A (the failover).
	good(t, "B preempt A", prOut(t, b, lun, prPreempt, prTypeWERO, kb, ka, false))
	// A's next command reports REGISTRATIONS PREEMPTED, then A conflicts.
	res, err := a.Write16(context.Background(), lun, 100, 512, make([]byte, 512), false)
	if err != nil {
		t.Fatal(err)
	}
	if sd := res.SenseData(); !res.UnitAttention() || sd.ASC != 0x2a || sd.ASCQ != 0x05 {
		t.Fatalf("preempted node's first command: status %#x sense %v, want UA 2A/05", res.Status, sd)
	}
	if st := writeStatus(t, a, lun); st != statusResvConflict {
		t.Fatalf("preempted node A write: status %#x, want RESERVATION CONFLICT", st)
	}
	// READ FULL STATUS shows B alone, holding the WERO reservation.
	fs := prIn(t, b, lun, prInReadFullStatus)
	n := int(binary.BigEndian.Uint32(fs[4:]))
	if n < 24 {
		t.Fatalf("READ FULL STATUS: %d bytes of descriptors", n)
	}
	desc := fs[8:]
	if key := binary.BigEndian.Uint64(desc[0:]); key != kb {
		t.Fatalf("full status: key %#x, want B's", key)
	}
	if desc[12]&0x01 == 0 || desc[13]&0x0f != prTypeWERO {
		t.Fatalf("full status: R_HOLDER=%d type=%d, want B holding WERO", desc[12]&1, desc[13]&0x0f)
	}
	addl := int(binary.BigEndian.Uint32(desc[20:]))
	if 24+addl != n {
		t.Fatalf("full status: %d bytes for one registrant with a %d-byte TransportID; more than B is registered", n, addl)
	}
}

// TestReservationsAcrossRestart: APTPL registrations and reservations
// survive a daemon restart; without APTPL they do not.
func TestReservationsAcrossRestart(t *testing.T) {
	for _, aptpl := range []bool{true, false} {
		t.Run(fmt.Sprintf("aptpl=%v", aptpl), func(t *testing.T) {
			d := newDaemon(t, vaaiConfig, 1)
			d.start()
			const lun, key = 1, 0x1234
			a := session(t, d, "iqn.2026-11.dev.lunway:node-a", lun)
			good(t, "register", prOut(t, a, lun, prRegister, 0, 0, key, aptpl))
			good(t, "reserve", prOut(t, a, lun, prReserve, prTypeWERO, key, 0, aptpl))
			a.Close()
			d.stop()
			d.start()
			a = session(t, d, "iqn.2026-11.dev.lunway:node-a", lun)
			k := keys(prIn(t, a, lun, prInReadKeys))
			rr := prIn(t, a, lun, prInReadReservation)
			held := binary.BigEndian.Uint32(rr[4:]) >= 16
			if aptpl {
				if len(k) != 1 || k[0] != key || !held {
					t.Fatalf("after restart with APTPL: keys %x, reservation held %v", k, held)
				}
				c := session(t, d, "iqn.2026-11.dev.lunway:outsider", lun)
				if st := writeStatus(t, c, lun); st != statusResvConflict {
					t.Fatalf("outsider write after restart: status %#x, want RESERVATION CONFLICT", st)
				}
			} else if len(k) != 0 || held {
				t.Fatalf("after restart without APTPL: keys %x, reservation held %v", k, held)
			}
		})
	}
}
