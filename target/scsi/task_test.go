package scsi

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lunway/lunway/blockdev"
)

// stuckDev is a Device whose reads of LBA 0 block until released,
// ignoring their context, like a backend call that hangs.
type stuckDev struct {
	blockdev.Device
	release chan struct{}
	entered chan struct{}
	once    sync.Once
}

func (d *stuckDev) ReadAt(ctx context.Context, p []byte, off int64) error {
	if off == 0 {
		d.once.Do(func() { close(d.entered) })
		<-d.release
	}
	return d.Device.ReadAt(ctx, p, off)
}

func TestUnitAttentions(t *testing.T) {
	f := newFixture(t, nil, nil, nil)
	a := nexus("iqn.2026-01.io.lunway:a", 1, 1)
	b := nexus("iqn.2026-01.io.lunway:b", 2, 1)
	tur := mustHex(t, "00 0000000000")
	// INQUIRY and REPORT LUNS neither report nor consume the power-on UA.
	good(t, f.run(a, 0, mustHex(t, "12 00 00 0024 00"), nil))
	good(t, f.run(a, 0, mustHex(t, "a0 00 00 000000 00000010 00 00"), nil))
	expect(t, f.run(a, 0, tur, nil), StatusCheckCondition, 6, 0x29, 0x00)
	good(t, f.run(a, 0, tur, nil))
	// REQUEST SENSE returns the UA as data and clears it.
	res := f.run(b, 0, mustHex(t, "03 00 0000 12 00"), nil)
	good(t, res)
	if s, _ := ParseSense(res.Data); s.Key != 6 || s.ASC != 0x29 {
		t.Fatalf("REQUEST SENSE data %x", res.Data)
	}
	good(t, f.run(b, 0, tur, nil))

	// Capacity change reaches every nexus.
	f.lu.CapacityChanged()
	expect(t, f.run(a, 0, tur, nil), StatusCheckCondition, 6, 0x2a, 0x09)
	expect(t, f.run(b, 0, tur, nil), StatusCheckCondition, 6, 0x2a, 0x09)

	// Adding a LUN: REPORTED LUNS DATA HAS CHANGED, cleared by REPORT LUNS.
	lu1, err := NewLU(LUOptions{Device: newMem(t, 64, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.tg.AddLU(1, lu1); err != nil {
		t.Fatal(err)
	}
	expect(t, f.run(a, 0, tur, nil), StatusCheckCondition, 6, 0x3f, 0x0e)
	good(t, f.run(b, 0, mustHex(t, "a0 00 00 000000 00000100 00 00"), nil))
	good(t, f.run(b, 0, tur, nil))
	if _, err := f.tg.RemoveLU(1); err != nil {
		t.Fatal(err)
	}
	expect(t, f.run(a, 0, tur, nil), StatusCheckCondition, 6, 0x3f, 0x0e)

	// LU reset: 29/03 replaces anything queued.
	f.lu.CapacityChanged()
	if r := f.tg.ManageTask(t.Context(), TMFRequest{Function: TMFLogicalUnitReset, Nexus: a, LUN: 0}); r != TMFFunctionComplete {
		t.Fatal(r)
	}
	expect(t, f.run(b, 0, tur, nil), StatusCheckCondition, 6, 0x29, 0x03)
	good(t, f.run(b, 0, tur, nil))

	// QUERY ASYNCHRONOUS EVENT sees a pending UA.
	if r := f.tg.ManageTask(t.Context(), TMFRequest{Function: TMFQueryAsyncEvent, Nexus: a, LUN: 0}); r != TMFFunctionSucceeded {
		t.Fatalf("query async event: %v", r)
	}
	// I_T nexus reset.
	f.ready(a)
	f.tg.ManageTask(t.Context(), TMFRequest{Function: TMFITNexusReset, Nexus: a})
	expect(t, f.run(a, 0, tur, nil), StatusCheckCondition, 6, 0x29, 0x07)
	// A lost nexus that comes back is new: power-on again.
	f.tg.NexusLost(a)
	expect(t, f.run(a, 0, tur, nil), StatusCheckCondition, 6, 0x29, 0x00)
	// Unknown opcodes report the UA first.
	f.lu.CapacityChanged()
	expect(t, f.run(a, 0, mustHex(t, "02 0000000000"), nil), StatusCheckCondition, 6, 0x2a, 0x09)
	expect(t, f.run(a, 0, mustHex(t, "02 0000000000"), nil), StatusCheckCondition, 5, 0x20, 0x00)
}

func TestUAQueueBounded(t *testing.T) {
	ns := &nexusState{}
	for i := 0; i < 100; i++ {
		ns.addUA(asc(0x2a00 + i))
	}
	if ns.pending.Load() != maxPendingUA {
		t.Fatalf("%d pending", ns.pending.Load())
	}
	ns.addUA(ascPowerOnReset)
	if c, ok := ns.takeUA(); !ok || c != ascPowerOnReset {
		t.Fatalf("took %x", c)
	}
	if _, ok := ns.takeUA(); ok {
		t.Fatal("reset UA did not replace the queue")
	}
}

func TestAbortStuckTask(t *testing.T) {
	dev := &stuckDev{Device: newMem(t, testBlocks, nil), release: make(chan struct{}), entered: make(chan struct{})}
	defer close(dev.release)
	f := newFixture(t, dev, &TargetOptions{AbortWait: 50 * time.Millisecond}, nil)
	n := nexus("iqn.2026-01.io.lunway:a", 1, 1)
	f.ready(n)
	cmd := &Command{Nexus: n, LUN: 0, CDB: mustHex(t, "28 00 00000000 00 0001 00 000000000000"), Tag: 42, Attr: AttrSimple}
	task := f.tg.Begin(context.Background(), cmd)
	done := make(chan Result, 1)
	go func() { done <- task.Execute() }()
	<-dev.entered
	if r := f.tg.ManageTask(t.Context(), TMFRequest{Function: TMFQueryTask, Nexus: n, RefTag: 42}); r != TMFFunctionSucceeded {
		t.Fatalf("query task: %v", r)
	}
	if r := f.tg.ManageTask(t.Context(), TMFRequest{Function: TMFQueryTaskSet, Nexus: n, LUN: 0}); r != TMFFunctionSucceeded {
		t.Fatalf("query task set: %v", r)
	}
	start := time.Now()
	if r := f.tg.ManageTask(t.Context(), TMFRequest{Function: TMFAbortTask, Nexus: n, RefTag: 42}); r != TMFFunctionComplete {
		t.Fatalf("abort: %v", r)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("abort took %v with a stuck device", d)
	}
	select {
	case <-done:
		t.Fatal("stuck task finished before its device call returned")
	default:
	}
	if r := f.tg.ManageTask(t.Context(), TMFRequest{Function: TMFAbortTask, Nexus: n, RefTag: 99}); r != TMFTaskNotFound {
		t.Fatalf("abort unknown tag: %v", r)
	}
	dev.release <- struct{}{} // let the read finish
	res := <-done
	if !res.Aborted {
		t.Fatalf("aborted task result %+v", res)
	}
	task.End()
	if r := f.tg.ManageTask(t.Context(), TMFRequest{Function: TMFQueryTask, Nexus: n, RefTag: 42}); r != TMFFunctionComplete {
		t.Fatalf("query ended task: %v", r)
	}
}

func TestTaskManagementResponses(t *testing.T) {
	f := newFixture(t, nil, nil, nil)
	n := nexus("iqn.2026-01.io.lunway:a", 1, 1)
	f.ready(n)
	ctx := t.Context()
	for _, c := range []struct {
		req  TMFRequest
		want TMFResponse
	}{
		{TMFRequest{Function: TMFAbortTaskSet, Nexus: n, LUN: 0}, TMFFunctionComplete},
		{TMFRequest{Function: TMFAbortTaskSet, Nexus: n, LUN: 3}, TMFIncorrectLUN},
		{TMFRequest{Function: TMFClearTaskSet, Nexus: n, LUN: 0}, TMFFunctionComplete},
		{TMFRequest{Function: TMFLogicalUnitReset, Nexus: n, LUN: 3}, TMFIncorrectLUN},
		{TMFRequest{Function: TMFTargetWarmReset, Nexus: n}, TMFFunctionComplete},
		{TMFRequest{Function: TMFTargetColdReset, Nexus: n}, TMFFunctionComplete},
		{TMFRequest{Function: TMFClearACA, Nexus: n}, TMFNotSupported},
		{TMFRequest{Function: TMFTaskReassign, Nexus: n}, TMFNotSupported},
		{TMFRequest{Function: TMFQueryTask, Nexus: n, RefTag: 7}, TMFFunctionComplete},
		{TMFRequest{Function: TMFQueryTaskSet, Nexus: n, LUN: 0}, TMFFunctionComplete},
	} {
		if got := f.tg.ManageTask(ctx, c.req); got != c.want {
			t.Errorf("function %d: %v, want %v", c.req.Function, got, c.want)
		}
	}
	// Cold reset: power-on occurred.
	expect(t, f.run(n, 0, mustHex(t, "00 0000000000"), nil), StatusCheckCondition, 6, 0x29, 0x01)
}

func TestClearTaskSetTAS(t *testing.T) {
	for _, tas := range []bool{false, true} {
		dev := &stuckDev{Device: newMem(t, testBlocks, nil), release: make(chan struct{}), entered: make(chan struct{})}
		f := newFixture(t, dev, &TargetOptions{AbortWait: 20 * time.Millisecond}, nil)
		a := nexus("iqn.2026-01.io.lunway:a", 1, 1)
		b := nexus("iqn.2026-01.io.lunway:b", 2, 1)
		f.ready(a)
		f.ready(b)
		if tas {
			good(t, f.run(a, 0, mustHex(t, "15 10 0000 10 00"), mustHex(t, "00000000 0a0a 00 10 00 40 0000 ffff 0000")))
			f.ready(b)
		}
		task := f.tg.Begin(context.Background(), &Command{Nexus: b, LUN: 0, CDB: mustHex(t, "28 00 00000000 00 0001 00 000000000000"), Tag: 1})
		done := make(chan Result, 1)
		go func() { done <- task.Execute() }()
		<-dev.entered
		f.tg.ManageTask(t.Context(), TMFRequest{Function: TMFClearTaskSet, Nexus: a, LUN: 0})
		close(dev.release)
		res := <-done
		task.End()
		if tas {
			if res.Status != StatusTaskAborted || res.Aborted {
				t.Fatalf("TAS=1: result %+v", res)
			}
			good(t, f.run(b, 0, mustHex(t, "00 0000000000"), nil))
		} else {
			if !res.Aborted {
				t.Fatalf("TAS=0: result %+v", res)
			}
			expect(t, f.run(b, 0, mustHex(t, "00 0000000000"), nil), StatusCheckCondition, 6, 0x2f, 0x00)
		}
	}
}

// orderDev records the order in which reads of distinct LBAs start, and
// holds reads of LBA 0 until released.
type orderDev struct {
	blockdev.Device
	mu      sync.Mutex
	order   []int64
	release chan struct{}
	entered chan struct{}
}

func (d *orderDev) ReadAt(ctx context.Context, p []byte, off int64) error {
	d.mu.Lock()
	d.order = append(d.order, off/512)
	d.mu.Unlock()
	if off == 0 {
		close(d.entered)
		<-d.release
	}
	return d.Device.ReadAt(ctx, p, off)
}

func TestTaskAttributes(t *testing.T) {
	dev := &orderDev{Device: newMem(t, testBlocks, nil), release: make(chan struct{}), entered: make(chan struct{})}
	f := newFixture(t, dev, nil, nil)
	n := nexus("iqn.2026-01.io.lunway:a", 1, 1)
	f.ready(n)
	read := func(lba byte, attr TaskAttr, tag uint32) *Task {
		return f.tg.Begin(context.Background(), &Command{Nexus: n, LUN: 0, Tag: tag, Attr: attr,
			CDB: []byte{0x28, 0, 0, 0, 0, lba, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}})
	}
	var wg sync.WaitGroup
	var results sync.Map
	exec := func(task *Task) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results.Store(task.cmd.Tag, task.Execute())
			task.End()
		}()
	}
	t1 := read(0, AttrSimple, 1) // blocks in the device
	t2 := read(2, AttrOrdered, 2)
	t3 := read(3, AttrSimple, 3)
	t4 := read(4, AttrHeadOfQueue, 4)
	exec(t1)
	<-dev.entered
	exec(t2)
	exec(t3)
	exec(t4)
	// The HEAD OF QUEUE task runs while the ORDERED one waits for t1 and
	// the SIMPLE one waits for the ORDERED one.
	deadline := time.Now().Add(5 * time.Second)
	for {
		dev.mu.Lock()
		n := len(dev.order)
		dev.mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	dev.mu.Lock()
	got := append([]int64(nil), dev.order...)
	dev.mu.Unlock()
	if len(got) != 2 || got[0] != 0 || got[1] != 4 {
		t.Fatalf("before release: reads %v, want [0 4]", got)
	}
	close(dev.release)
	wg.Wait()
	dev.mu.Lock()
	got = dev.order
	dev.mu.Unlock()
	if len(got) != 4 || got[2] != 2 || got[3] != 3 {
		t.Fatalf("reads %v, want [0 4 2 3]", got)
	}
	for tag := uint32(1); tag <= 4; tag++ {
		v, _ := results.Load(tag)
		good(t, v.(Result))
	}
}

func TestNexusLostAbortsWaitingTasks(t *testing.T) {
	f := newFixture(t, nil, nil, nil)
	n := nexus("iqn.2026-01.io.lunway:a", 1, 1)
	task := f.tg.Begin(context.Background(), &Command{Nexus: n, LUN: 0, CDB: mustHex(t, "00 0000000000"), Tag: 1})
	f.tg.NexusLost(n)
	if !errors.Is(context.Cause(task.Context()), errTaskAborted) {
		t.Fatal("task context not aborted")
	}
	if res := task.Execute(); !res.Aborted {
		t.Fatalf("result %+v", res)
	}
	task.End()
}

// TestConcurrentIO runs reads and writes from several nexuses on two LUs
// in parallel (run with -race), each goroutine on its own range, and
// checks every read sees the goroutine's last write.
func TestConcurrentIO(t *testing.T) {
	tg := NewTarget(testIQN, nil)
	for lun := uint64(0); lun < 2; lun++ {
		lu, err := NewLU(LUOptions{Device: newMem(t, testBlocks, nil)})
		if err != nil {
			t.Fatal(err)
		}
		if err := tg.AddLU(lun, lu); err != nil {
			t.Fatal(err)
		}
	}
	const workers, rounds = 8, 100
	var wg sync.WaitGroup
	var failures atomic.Int32
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := nexus("iqn.2026-01.io.lunway:w", byte(w), 1)
			lun := uint64(w % 2)
			for lun := uint64(0); lun < 2; lun++ {
				for i := 0; i < maxPendingUA+1; i++ {
					if runCmd(tg, n, lun, []byte{0, 0, 0, 0, 0, 0}, nil, AttrSimple).Status == StatusGood {
						break
					}
				}
			}
			lba := byte(16 * w)
			for i := 0; i < rounds; i++ {
				data := pattern(4096, byte(i+w))
				if runCmd(tg, n, lun, []byte{0x2a, 0, 0, 0, 0, lba, 0, 0, 8, 0}, data, AttrSimple).Status != StatusGood {
					failures.Add(1)
					return
				}
				res := runCmd(tg, n, lun, []byte{0x28, 0, 0, 0, 0, lba, 0, 0, 8, 0}, nil, AttrSimple)
				if res.Status != StatusGood || string(res.Data) != string(data) {
					failures.Add(1)
					return
				}
			}
		}()
	}
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d workers failed", failures.Load())
	}
	st := tg.LU(0).Stats()
	if st.Reads == 0 || st.Writes == 0 || st.ReadBytes == 0 || st.InFlight != 0 || st.TasksOpen != 0 {
		t.Fatalf("stats %+v", st)
	}
	var sum uint64
	for _, c := range st.ReadLatency {
		sum += c
	}
	if sum != st.Reads {
		t.Fatalf("latency histogram holds %d reads, counter %d", sum, st.Reads)
	}
}

func TestResizeNoticed(t *testing.T) {
	dev := newMem(t, testBlocks, nil)
	f := newFixture(t, dev, nil, nil)
	a := nexus("iqn.2026-01.io.lunway:a", 1, 1)
	b := nexus("iqn.2026-01.io.lunway:b", 2, 1)
	f.ready(a)
	f.ready(b)
	if err := dev.Resize(t.Context(), 2*testBlocks*512); err != nil {
		t.Fatal(err)
	}
	// a's command notices the resize and sees the new capacity.
	res := f.run(a, 0, mustHex(t, "25 00 00000000 0000 00 00"), nil)
	good(t, res)
	if be32(res.Data) != 2*testBlocks-1 {
		t.Fatalf("capacity %d", be32(res.Data))
	}
	expect(t, f.run(b, 0, tur, nil), StatusCheckCondition, 6, 0x2a, 0x09)
	good(t, f.run(b, 0, tur, nil))
	// An explicit CapacityChanged reports to every nexus again.
	f.lu.CapacityChanged()
	expect(t, f.run(b, 0, tur, nil), StatusCheckCondition, 6, 0x2a, 0x09)
	good(t, f.run(b, 0, tur, nil))
}
