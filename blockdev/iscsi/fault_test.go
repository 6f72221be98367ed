package iscsi_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/iscsi"
	"github.com/lunway/lunway/blockdev/mem"
	tiscsi "github.com/lunway/lunway/target/iscsi"
	"github.com/lunway/lunway/target/iscsitest"
	"github.com/lunway/lunway/target/scsi"
)

// faulty wraps the device under an LU: it fails the first failReads
// reads with failErr, blocks reads while hang is set (until the command's
// context ends), and records the largest request of each kind.
type faulty struct {
	blockdev.Device
	failReads atomic.Int32
	failErr   error // guarded by mu
	hang      atomic.Bool
	hung      atomic.Int32
	mu        sync.Mutex
	maxRead   int64
	maxWrite  int64
	maxUnmap  int64
	maxZero   int64
}

func (f *faulty) setFail(err error) {
	f.mu.Lock()
	f.failErr = err
	f.mu.Unlock()
}

func (f *faulty) note(p *int64, n int64) {
	f.mu.Lock()
	*p = max(*p, n)
	f.mu.Unlock()
}

func (f *faulty) ReadAt(ctx context.Context, p []byte, off int64) error {
	if f.hang.Load() {
		f.hung.Add(1)
		<-ctx.Done()
		return ctx.Err()
	}
	if f.failReads.Add(-1) >= 0 {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.failErr
	}
	f.note(&f.maxRead, int64(len(p)))
	return f.Device.ReadAt(ctx, p, off)
}

func (f *faulty) WriteAt(ctx context.Context, p []byte, off int64, fl blockdev.WriteFlags) error {
	f.note(&f.maxWrite, int64(len(p)))
	return f.Device.WriteAt(ctx, p, off, fl)
}

func (f *faulty) Unmap(ctx context.Context, off, n int64) error {
	f.note(&f.maxUnmap, n)
	return f.Device.(blockdev.Unmapper).Unmap(ctx, off, n)
}

func (f *faulty) WriteZeroes(ctx context.Context, off, n int64, unmap bool, fl blockdev.WriteFlags) error {
	f.note(&f.maxZero, n)
	return f.Device.(blockdev.ZeroWriter).WriteZeroes(ctx, off, n, unmap, fl)
}

func (f *faulty) AllocationStatus(ctx context.Context, off, n int64) ([]blockdev.Extent, error) {
	return f.Device.(blockdev.AllocationStatuser).AllocationStatus(ctx, off, n)
}

// startFaulty serves one LU over a faulty mem device, with the given LU
// limits (zero: defaults).
func startFaulty(t *testing.T, size int64, lu scsi.LUOptions) (*iscsitest.Server, *faulty) {
	t.Helper()
	m, err := mem.New(size, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &faulty{Device: m}
	s := iscsitest.Start(t, &iscsitest.Options{SizeBytes: 1 << 20, Target: func(c *tiscsi.TargetConfig) {
		st := scsi.NewTarget(c.Name, nil)
		lu.Device = f
		l, err := scsi.NewLU(lu)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.AddLU(0, l); err != nil {
			t.Fatal(err)
		}
		c.SCSI = st
	}})
	return s, f
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i/512) | 1
	}
	return b
}

func closeSessions(t *testing.T, s *iscsitest.Server) {
	t.Helper()
	for _, si := range s.Sessions() {
		if err := s.CloseSession(si.ID); err != nil && !errors.Is(err, tiscsi.ErrNoSuchSession) {
			t.Fatal(err)
		}
	}
}

// TestLimits: requests are split at the transfer limit and UNMAP and
// WRITE SAME at the target's VPD B0h maxima, and still land whole.
func TestLimits(t *testing.T) {
	ctx := context.Background()
	s, f := startFaulty(t, 8<<20, scsi.LUOptions{MaxTransferBytes: 64 << 10, MaxWriteSameBytes: 192 << 10})
	d := openDev(t, target(s, 0), nil)
	defer d.Close()
	data := pattern(3<<20, 7)
	if err := d.WriteAt(ctx, data, 512, 0); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if err := d.ReadAt(ctx, got, 512); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("read back differs")
	}
	if err := d.(blockdev.Unmapper).Unmap(ctx, 1<<20, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := d.(blockdev.ZeroWriter).WriteZeroes(ctx, 2<<20, 1<<20, false, blockdev.FUA); err != nil {
		t.Fatal(err)
	}
	if err := d.ReadAt(ctx, got, 512); err != nil {
		t.Fatal(err)
	}
	clear(data[1<<20-512 : 3<<20-512])
	if !bytes.Equal(got, data) {
		t.Fatal("zeroed ranges do not read back as zeros")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.maxRead != 64<<10 || f.maxWrite != 64<<10 {
		t.Errorf("largest read %d, write %d; want 64 KiB (the target's maximum transfer length)", f.maxRead, f.maxWrite)
	}
	if f.maxUnmap != 192<<10 || f.maxZero != 192<<10 {
		t.Errorf("largest unmap %d, write same %d; want 192 KiB", f.maxUnmap, f.maxZero)
	}
	exts, err := d.(blockdev.AllocationStatuser).AllocationStatus(ctx, 0, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	want := []blockdev.Extent{{Off: 0, Len: 1 << 20, State: blockdev.Mapped}, {Off: 1 << 20, Len: 2 << 20, State: blockdev.Deallocated},
		{Off: 3 << 20, Len: 64 << 10, State: blockdev.Mapped}, {Off: 3<<20 + 64<<10, Len: 1<<20 - 64<<10, State: blockdev.Deallocated}}
	if len(exts) != len(want) {
		t.Fatalf("allocation %+v, want %+v", exts, want)
	}
	for i := range want {
		if exts[i] != want[i] {
			t.Fatalf("allocation %+v, want %+v", exts, want)
		}
	}
}

// TestReconnect: after the target ends the session, I/O logs in again
// and goes on; flushed data is intact and Flush still works.
func TestReconnect(t *testing.T) {
	ctx := context.Background()
	s := iscsitest.Start(t, &iscsitest.Options{SizeBytes: 4 << 20})
	d := openDev(t, target(s, 0), &iscsi.Options{ReconnectBackoff: 10 * time.Millisecond})
	defer d.Close()
	data := pattern(1<<20, 3)
	if err := d.WriteAt(ctx, data, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		closeSessions(t, s)
		got := make([]byte, len(data))
		if err := d.ReadAt(ctx, got, 0); err != nil {
			t.Fatalf("round %d: ReadAt after the session ended: %v", i, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("round %d: data differs after reconnect", i)
		}
	}
	// Writes with FUA after a reconnect are durable: Flush is fine.
	closeSessions(t, s)
	if err := d.WriteAt(ctx, data, 1<<20, blockdev.FUA); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(ctx); err != nil {
		t.Fatalf("Flush after a reconnect with nothing unflushed: %v", err)
	}
	if n := len(s.Sessions()); n != 1 {
		t.Fatalf("%d sessions on the target, want 1", n)
	}
}

// TestLostWrites: a connection lost while writes were unflushed makes
// Flush and Close fail with ErrLostWrites; reads still work.
func TestLostWrites(t *testing.T) {
	ctx := context.Background()
	s := iscsitest.Start(t, &iscsitest.Options{SizeBytes: 4 << 20})
	d := openDev(t, target(s, 0), &iscsi.Options{ReconnectBackoff: 10 * time.Millisecond})
	if err := d.WriteAt(ctx, pattern(64<<10, 1), 0, 0); err != nil {
		t.Fatal(err)
	}
	closeSessions(t, s)
	if err := d.ReadAt(ctx, make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(ctx); !errors.Is(err, iscsi.ErrLostWrites) {
		t.Fatalf("Flush = %v, want ErrLostWrites", err)
	}
	if err := d.Close(); !errors.Is(err, iscsi.ErrLostWrites) {
		t.Fatalf("Close = %v, want ErrLostWrites", err)
	}
}

// TestBusy: BUSY (the target's answer to a backend that is unavailable)
// is retried until it passes, or until BusyTimeout.
func TestBusy(t *testing.T) {
	ctx := context.Background()
	s, f := startFaulty(t, 1<<20, scsi.LUOptions{})
	f.setFail(blockdev.ErrUnavailable)
	d := openDev(t, target(s, 0), &iscsi.Options{BusyTimeout: 300 * time.Millisecond})
	defer d.Close()
	f.failReads.Store(3)
	if err := d.ReadAt(ctx, make([]byte, 4096), 0); err != nil {
		t.Fatalf("ReadAt after 3 BUSY answers: %v", err)
	}
	f.failReads.Store(1 << 30)
	start := time.Now()
	err := d.ReadAt(ctx, make([]byte, 4096), 0)
	if !errors.Is(err, blockdev.ErrUnavailable) {
		t.Fatalf("ReadAt while always BUSY = %v, want ErrUnavailable", err)
	}
	if el := time.Since(start); el < 300*time.Millisecond || el > 5*time.Second {
		t.Fatalf("gave up after %v, want about the 300 ms BusyTimeout", el)
	}
	// Medium errors are not retried and map to ErrCorrupt.
	f.setFail(blockdev.ErrCorrupt)
	f.failReads.Store(1)
	if err := d.ReadAt(ctx, make([]byte, 4096), 0); !errors.Is(err, blockdev.ErrCorrupt) {
		t.Fatalf("ReadAt on a medium error = %v, want ErrCorrupt", err)
	}
}

// TestCapacityChange: a resize on the target raises CAPACITY DATA HAS
// CHANGED; the Device clears it, retries and reports the new size.
func TestCapacityChange(t *testing.T) {
	ctx := context.Background()
	s := iscsitest.Start(t, &iscsitest.Options{SizeBytes: 4 << 20})
	d := openDev(t, target(s, 0), nil)
	defer d.Close()
	if err := s.Devices[0].Resize(ctx, 8<<20); err != nil {
		t.Fatal(err)
	}
	// The target notices the resize on the next command, here another
	// initiator's, and raises the unit attention for every other nexus.
	other := openDev(t, target(s, 0), nil)
	if got := other.Info().SizeBytes; got != 8<<20 {
		t.Fatalf("a new Device sees %d bytes", got)
	}
	other.Close()
	if err := d.ReadAt(ctx, make([]byte, 4096), 0); err != nil {
		t.Fatalf("ReadAt after a resize: %v", err)
	}
	if got := d.Info().SizeBytes; got != 8<<20 {
		t.Fatalf("Info().SizeBytes = %d after the resize, want %d", got, 8<<20)
	}
	if err := d.WriteAt(ctx, pattern(4096, 9), 8<<20-4096, blockdev.FUA); err != nil {
		t.Fatalf("write in the grown part: %v", err)
	}
}

// TestCommandTimeout: a command that gets no answer ends the connection
// and is retried on a new one, a bounded number of times.
func TestCommandTimeout(t *testing.T) {
	ctx := context.Background()
	s, f := startFaulty(t, 1<<20, scsi.LUOptions{})
	d := openDev(t, target(s, 0), &iscsi.Options{CommandTimeout: 200 * time.Millisecond, ReconnectBackoff: 10 * time.Millisecond})
	defer d.Close()
	f.hang.Store(true)
	start := time.Now()
	err := d.ReadAt(ctx, make([]byte, 4096), 0)
	if !errors.Is(err, blockdev.ErrUnavailable) {
		t.Fatalf("ReadAt on a hung target = %v, want ErrUnavailable", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("gave up after %v", el)
	}
	if n := f.hung.Load(); n != 4 {
		t.Fatalf("the command was sent %d times, want 4 (1 + 3 reconnects)", n)
	}
	f.hang.Store(false)
	if err := d.ReadAt(ctx, make([]byte, 4096), 0); err != nil {
		t.Fatalf("ReadAt once the target answers again: %v", err)
	}
}

// TestTargetGone: when the target stops, I/O fails with ErrUnavailable
// after the bounded reconnect attempts, and Close still returns.
func TestTargetGone(t *testing.T) {
	ctx := context.Background()
	s := iscsitest.Start(t, &iscsitest.Options{SizeBytes: 1 << 20})
	d := openDev(t, target(s, 0), &iscsi.Options{ReconnectAttempts: 2, ReconnectBackoff: 10 * time.Millisecond})
	s.Close()
	err := d.ReadAt(ctx, make([]byte, 4096), 0)
	if !errors.Is(err, blockdev.ErrUnavailable) {
		t.Fatalf("ReadAt with the target gone = %v, want ErrUnavailable", err)
	}
	if err := d.Close(); err == nil {
		t.Fatalf("Close with the target gone succeeded")
	}
	if err := d.Close(); !errors.Is(err, blockdev.ErrClosed) {
		t.Fatalf("second Close = %v", err)
	}
}

// TestReadOnlyOption: Options.ReadOnly refuses writes locally.
func TestReadOnlyOption(t *testing.T) {
	s := iscsitest.Start(t, &iscsitest.Options{SizeBytes: 1 << 20})
	d := openDev(t, target(s, 0), &iscsi.Options{ReadOnly: true})
	defer d.Close()
	if !d.Info().ReadOnly {
		t.Fatal("Info().ReadOnly not set")
	}
	if err := d.WriteAt(context.Background(), make([]byte, 512), 0, 0); !errors.Is(err, blockdev.ErrReadOnly) {
		t.Fatalf("WriteAt = %v", err)
	}
}
