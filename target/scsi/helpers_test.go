package scsi

import (
	"bytes"
	"context"
	"encoding/hex"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/mem"
)

const (
	testBlocks = 8192 // 4 MiB of 512-byte blocks
	testIQN    = "iqn.2026-01.io.lunway:test"
)

func newMem(t testing.TB, blocks int64, opts *mem.Options) *mem.Device {
	t.Helper()
	bs := int64(512)
	if opts != nil && opts.LogicalBlockSize != 0 {
		bs = int64(opts.LogicalBlockSize)
	}
	d, err := mem.New(blocks*bs, opts)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// fixture is a Target with one LU over a mem device at LUN 0.
type fixture struct {
	t   testing.TB
	tg  *Target
	lu  *LU
	dev blockdev.Device
}

func newFixture(t testing.TB, dev blockdev.Device, topts *TargetOptions, mod func(*LUOptions)) *fixture {
	t.Helper()
	if dev == nil {
		dev = newMem(t, testBlocks, nil)
	}
	tg := NewTarget(testIQN, topts)
	o := LUOptions{Device: dev, SerialNumber: "SN0001"}
	if mod != nil {
		mod(&o)
	}
	lu, err := NewLU(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.AddLU(0, lu); err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, tg: tg, lu: lu, dev: dev}
}

var nexusSeq atomic.Uint64

// nexus returns a new nexus of initiator name through port relID.
func nexus(name string, isid byte, relID uint16) *Nexus {
	return &Nexus{
		ID:            nexusSeq.Add(1),
		InitiatorName: name,
		ISID:          [6]byte{0x40, 0, 0, 0, 0, isid},
		Port:          TargetPort{Name: testIQN + ",t,0x0001", RelativeID: relID, GroupID: 1},
	}
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// run executes one command and returns its result (with Data copied, the
// buffer released).
func (f *fixture) run(n *Nexus, lun uint64, cdb []byte, out []byte) Result {
	return runCmd(f.tg, n, lun, cdb, out, AttrSimple)
}

func runCmd(tg *Target, n *Nexus, lun uint64, cdb []byte, out []byte, attr TaskAttr) Result {
	full := make([]byte, max(16, len(cdb)))
	copy(full, cdb)
	cmd := &Command{Nexus: n, LUN: lun, CDB: full, Tag: 1, Attr: attr, DataOut: out,
		ExpectedLen: uint32(len(out)), Write: out != nil, Read: out == nil}
	task := tg.Begin(context.Background(), cmd)
	res := execute(task)
	res.Data = bytes.Clone(res.Data)
	rel := res.release
	res.release = nil
	if rel != nil {
		rel()
	}
	task.End()
	return res
}

// execute runs task as a transport does: through ExecuteAsync when the
// command and the Device allow it (an LU over blockdevtest.AsyncMem), with
// Execute otherwise.
func execute(task *Task) Result {
	c := &chanCompleter{ch: make(chan Result, 2)}
	if !task.ExecuteAsync(c) {
		return task.Execute()
	}
	res := <-c.ch
	if c.n.Load() != 1 {
		panic("ExecuteAsync completed more than once")
	}
	return res
}

// chanCompleter is a Completer that sends the Result on ch.
type chanCompleter struct {
	n  atomic.Int32
	ch chan Result
}

func (c *chanCompleter) TaskDone(res Result) {
	c.n.Add(1)
	c.ch <- res
}

// ready clears the power-on unit attention of n.
func (f *fixture) ready(n *Nexus) {
	f.t.Helper()
	for i := 0; i < maxPendingUA+1; i++ {
		if res := f.run(n, 0, []byte{0x00, 0, 0, 0, 0, 0}, nil); res.Status == StatusGood {
			return
		}
	}
	f.t.Fatal("unit attentions do not clear")
}

// expect checks status and, for CHECK CONDITION, key/asc/ascq.
func expect(t testing.TB, res Result, st Status, key, asc, ascq uint8) SenseInfo {
	t.Helper()
	if res.Status != st {
		s, _ := ParseSense(res.Sense)
		t.Fatalf("status %#x (sense %x/%02x/%02x), want %#x", res.Status, s.Key, s.ASC, s.ASCQ, st)
	}
	if st != StatusCheckCondition {
		return SenseInfo{}
	}
	s, ok := ParseSense(res.Sense)
	if !ok {
		t.Fatalf("unparseable sense %x", res.Sense)
	}
	if s.Key != key || s.ASC != asc || s.ASCQ != ascq {
		t.Fatalf("sense %x/%02x/%02x, want %x/%02x/%02x", s.Key, s.ASC, s.ASCQ, key, asc, ascq)
	}
	return s
}

func good(t testing.TB, res Result) {
	t.Helper()
	expect(t, res, StatusGood, 0, 0, 0)
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}
