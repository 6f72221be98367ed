package scsi

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/blockdevtest"
)

// newAsyncFixture is a fixture over an AsyncMem with slots request slots.
func newAsyncFixture(t *testing.T, slots int) (*fixture, *blockdevtest.AsyncMem) {
	t.Helper()
	a := blockdevtest.NewAsyncMem(newMem(t, testBlocks, nil), slots)
	return newFixture(t, a, nil, nil), a
}

// rw16 is a READ (16) or WRITE (16) CDB with flags in byte 1.
func rw16(op, flags byte, lba uint64, n uint32) []byte {
	cdb := make([]byte, 16)
	cdb[0], cdb[1] = op, flags
	for i := range 8 {
		cdb[2+i] = byte(lba >> (56 - 8*i))
	}
	cdb[10], cdb[11], cdb[12], cdb[13] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return cdb
}

// TestExecuteAsyncRoundTrip: READ and WRITE of every size class go through
// the Device's asynchronous I/O and read back what was written.
func TestExecuteAsyncRoundTrip(t *testing.T) {
	f, a := newAsyncFixture(t, 64)
	n := nexus("iqn.2026-01.io.lunway:a", 1, 1)
	f.ready(n)
	data := bytes.Repeat([]byte("lunway-async-io!"), 8*512/16)
	cdbs := []struct{ w, r []byte }{
		{mustHex(t, "2a 00 00000010 00 0008 00"), mustHex(t, "28 00 00000010 00 0008 00")},
		{mustHex(t, "aa 00 00000020 00000008 00 00"), mustHex(t, "a8 00 00000020 00000008 00 00")},
		{rw16(0x8a, 0, 0x30, 8), rw16(0x88, 0, 0x30, 8)},
	}
	before := a.Started.Load()
	for _, c := range cdbs {
		res := f.run(n, 0, c.w, data)
		good(t, res)
		if res.TransferLen != uint32(len(data)) {
			t.Fatalf("%x: transfer length %d", c.w[0], res.TransferLen)
		}
		res = f.run(n, 0, c.r, nil)
		good(t, res)
		if !bytes.Equal(res.Data, data) {
			t.Fatalf("%x: read back differs", c.r[0])
		}
	}
	if got := a.Started.Load() - before; got != 6 {
		t.Fatalf("%d requests went through AsyncIO, want 6", got)
	}
	// What the device holds is what was written.
	p := make([]byte, len(data))
	if err := a.ReadAt(t.Context(), p, 0x20*512); err != nil || !bytes.Equal(p, data) {
		t.Fatalf("device contents differ (%v)", err)
	}
	// The statistics count the asynchronous commands.
	if s := f.lu.Stats(); s.InFlight != 0 || s.Reads < 3 || s.Writes != 3 || s.ReadBytes < 3*4096 || s.WriteBytes != 3*4096 {
		t.Fatalf("stats: %+v", s)
	}
}

// TestExecuteAsyncErrors: the checks of the synchronous path answer the
// same on the asynchronous one, before the Device is touched.
func TestExecuteAsyncErrors(t *testing.T) {
	f, a := newAsyncFixture(t, 64)
	n := nexus("iqn.2026-01.io.lunway:a", 1, 1)
	blk := make([]byte, 512)
	// The power-on unit attention comes first.
	expect(t, f.run(n, 0, rw16(0x88, 0, 0, 1), nil), StatusCheckCondition, 6, 0x29, 0x00)
	before := a.Started.Load()
	expect(t, f.run(n, 0, rw16(0x88, 0, testBlocks, 1), nil), StatusCheckCondition, 5, 0x21, 0x00)
	expect(t, f.run(n, 0, rw16(0x8a, 0, testBlocks-1, 2), append(blk, blk...)), StatusCheckCondition, 5, 0x21, 0x00)
	expect(t, f.run(n, 0, rw16(0x88, 0x20, 0, 1), nil), StatusCheckCondition, 5, 0x24, 0x00) // RDPROTECT
	expect(t, f.run(n, 0, rw16(0x8a, 0x20, 0, 1), blk), StatusCheckCondition, 5, 0x24, 0x00) // WRPROTECT
	if res := f.run(n, 0, rw16(0x88, 0, 5, 0), nil); res.Status != StatusGood || len(res.Data) != 0 {
		t.Fatalf("zero-length read: status %#x, %d bytes", res.Status, len(res.Data))
	}
	f.lu.mode.swp.Store(true)
	expect(t, f.run(n, 0, rw16(0x8a, 0, 0, 1), blk), StatusCheckCondition, 7, 0x27, 0x02)
	f.lu.mode.swp.Store(false)
	if got := a.Started.Load() - before; got != 0 {
		t.Fatalf("%d failing commands reached the Device", got)
	}
	// Less data than the CDB asks for: the whole blocks sent are written.
	res := f.run(n, 0, rw16(0x8a, 0, 100, 4), bytes.Repeat([]byte{7}, 1024+100))
	good(t, res)
	p := make([]byte, 4*512)
	if err := a.ReadAt(t.Context(), p, 100*512); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p[:1024], bytes.Repeat([]byte{7}, 1024)) || !bytes.Equal(p[1024:], make([]byte, 1024)) {
		t.Fatal("a short data-out buffer wrote other than its whole blocks")
	}
	// A Device error reaches the initiator as sense.
	a.Close()
	res = f.run(n, 0, rw16(0x88, 0, 0, 1), nil)
	if res.Status == StatusGood {
		t.Fatal("a read of a closed Device succeeded")
	}
}

// TestExecuteAsyncFallback: what cannot start at once (FUA, write-through,
// no free request slot) still completes, through the synchronous calls.
func TestExecuteAsyncFallback(t *testing.T) {
	f, a := newAsyncFixture(t, 0) // every start is refused
	n := nexus("iqn.2026-01.io.lunway:a", 1, 1)
	f.ready(n)
	data := bytes.Repeat([]byte{0x5a}, 4096)
	good(t, f.run(n, 0, rw16(0x8a, 0, 8, 8), data))
	res := f.run(n, 0, rw16(0x88, 0, 8, 8), nil)
	good(t, res)
	if !bytes.Equal(res.Data, data) {
		t.Fatal("read back differs")
	}
	if a.Refused.Load() < 2 || a.Started.Load() != 0 {
		t.Fatalf("started %d, refused %d", a.Started.Load(), a.Refused.Load())
	}

	f, a = newAsyncFixture(t, 64)
	f.ready(n)
	good(t, f.run(n, 0, rw16(0x8a, 0x08, 8, 8), data)) // FUA
	f.lu.mode.wce.Store(false)
	good(t, f.run(n, 0, rw16(0x8a, 0, 16, 8), data)) // write-through
	f.lu.mode.wce.Store(true)
	if a.Started.Load() != 0 {
		t.Fatalf("%d durable writes went through AsyncIO (which has no FUA)", a.Started.Load())
	}
}

// TestExecuteAsyncOrdered: a task that must wait for an ORDERED one is
// not taken; it runs through Execute after it.
func TestExecuteAsyncOrdered(t *testing.T) {
	f, _ := newAsyncFixture(t, 64)
	n := nexus("iqn.2026-01.io.lunway:a", 1, 1)
	f.ready(n)
	mk := func(tag uint32, attr TaskAttr) *Task {
		cmd := &Command{Nexus: n, LUN: 0, CDB: rw16(0x88, 0, 0, 1), Tag: tag, Attr: attr, ExpectedLen: 512, Read: true}
		return f.tg.Begin(context.Background(), cmd)
	}
	ordered := mk(1, AttrOrdered)
	simple := mk(2, AttrSimple)
	c := &chanCompleter{ch: make(chan Result, 1)}
	if simple.ExecuteAsync(c) {
		t.Fatal("ExecuteAsync took a task that waits for an ORDERED one")
	}
	good(t, execute(ordered))
	ordered.End()
	res := simple.Execute()
	good(t, res)
	res.Release()
	simple.End()
}

// TestExecuteAsyncAbort: ABORT TASK of a task whose Device request is in
// flight waits for it, and the task ends aborted (no response).
func TestExecuteAsyncAbort(t *testing.T) {
	f, a := newAsyncFixture(t, 64)
	n := nexus("iqn.2026-01.io.lunway:a", 1, 1)
	f.ready(n)
	a.SetDelay(200 * time.Millisecond)
	cmd := &Command{Nexus: n, LUN: 0, CDB: rw16(0x88, 0, 0, 8), Tag: 9, Attr: AttrSimple, ExpectedLen: 4096, Read: true}
	task := f.tg.Begin(context.Background(), cmd)
	c := &chanCompleter{ch: make(chan Result, 2)}
	if !task.ExecuteAsync(c) {
		t.Fatal("ExecuteAsync refused a READ (16)")
	}
	start := time.Now()
	if r := f.tg.ManageTask(context.Background(), TMFRequest{Function: TMFAbortTask, Nexus: n, RefTag: 9}); r != TMFFunctionComplete {
		t.Fatalf("ABORT TASK: %v", r)
	}
	if time.Since(start) < 100*time.Millisecond {
		t.Fatal("ABORT TASK did not wait for the request in flight")
	}
	res := <-c.ch
	if !res.Aborted {
		t.Fatalf("aborted task ended with status %#x, not aborted", res.Status)
	}
	task.End()
	select {
	case <-c.ch:
		t.Fatal("a second completion")
	case <-time.After(50 * time.Millisecond):
	}
}

// asyncOnly hides every capability of an AsyncMem but AsyncIO, so that
// the LU protects writes with its own range lock (no CompareAndWriter).
type asyncOnly struct {
	blockdev.Device
	blockdev.AsyncIO
}

// TestExecuteAsyncRangeLock: a write to a range COMPARE AND WRITE holds
// waits for it (through the synchronous path); other ranges go on.
func TestExecuteAsyncRangeLock(t *testing.T) {
	a := blockdevtest.NewAsyncMem(newMem(t, testBlocks, nil), 64)
	f := newFixture(t, asyncOnly{a, a}, nil, nil)
	if f.lu.caw != nil {
		t.Fatal("the LU found a CompareAndWriter")
	}
	n := nexus("iqn.2026-01.io.lunway:a", 1, 1)
	f.ready(n)
	unlock := f.lu.ranges.lock(context.Background(), 0, 4096, true)
	done := make(chan Result, 1)
	go func() { done <- f.run(n, 0, rw16(0x8a, 0, 4, 1), make([]byte, 512)) }()
	good(t, f.run(n, 0, rw16(0x8a, 0, 64, 1), make([]byte, 512)))
	select {
	case <-done:
		t.Fatal("a write went past an exclusive range lock")
	case <-time.After(100 * time.Millisecond):
	}
	if a.Started.Load() != 1 {
		t.Fatalf("%d writes went through AsyncIO, want 1 (the unlocked range)", a.Started.Load())
	}
	unlock()
	good(t, <-done)
	f.lu.ranges.mu.Lock()
	defer f.lu.ranges.mu.Unlock()
	if len(f.lu.ranges.held) != 0 {
		t.Fatalf("%d ranges still held", len(f.lu.ranges.held))
	}
}
