package paths

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestStandardWorkloads(t *testing.T) {
	ws := Standard(time.Second)
	if len(ws) != 9 || !ws[0].OnePass || ws[0].Name != FillWorkload().Name {
		t.Fatalf("Standard: fill must come first: %+v", ws[0])
	}
	seen := map[string]bool{}
	for _, w := range ws {
		if err := w.Validate(256 << 20); err != nil {
			t.Errorf("%s: %v", w.Name, err)
		}
		if seen[w.Name] {
			t.Errorf("duplicate workload %s", w.Name)
		}
		seen[w.Name] = true
	}
	for _, name := range []string{"randread-4k-qd1", "randwrite-4k-qd32", "mixed70-64k-qd8", "seqwrite-1m-qd4", "journal-4k-flush"} {
		if !seen[name] {
			t.Errorf("missing workload %s", name)
		}
	}
}

func TestWorkloadValidate(t *testing.T) {
	ok := Workload{Name: "w", BlockSize: 4096, QueueDepth: 1, Duration: time.Second}
	for _, tc := range []struct {
		name string
		edit func(*Workload)
		span int64
	}{
		{"no name", func(w *Workload) { w.Name = "" }, 1 << 20},
		{"block size", func(w *Workload) { w.BlockSize = 1000 }, 1 << 20},
		{"huge block", func(w *Workload) { w.BlockSize = 64 << 20 }, 1 << 30},
		{"queue depth", func(w *Workload) { w.QueueDepth = 0 }, 1 << 20},
		{"read percent", func(w *Workload) { w.ReadPercent = 101 }, 1 << 20},
		{"flush", func(w *Workload) { w.FlushEvery = -1 }, 1 << 20},
		{"duration", func(w *Workload) { w.Duration = 0 }, 1 << 20},
		{"span too small", func(w *Workload) { w.QueueDepth = 32 }, 64 << 10},
		{"region too small", func(w *Workload) { w.QueueDepth = 4; w.RegionBytes = 8192 }, 1 << 20},
	} {
		w := ok
		tc.edit(&w)
		if err := w.Validate(tc.span); !errors.Is(err, ErrWorkload) {
			t.Errorf("%s: err = %v, want ErrWorkload", tc.name, err)
		}
	}
	if err := ok.Validate(1 << 20); err != nil {
		t.Fatal(err)
	}
}

func TestStripeOf(t *testing.T) {
	for _, tc := range []struct {
		slots  int64
		depth  int
		q      int
		lo, hi int64
	}{
		{16, 4, 0, 0, 4},
		{16, 4, 3, 12, 16},
		{18, 4, 3, 12, 18}, // the last slot takes the remainder
		{18, 4, 1, 4, 8},
		{5, 1, 0, 0, 5},
	} {
		lo, hi := stripeOf(tc.slots, tc.depth, tc.q)
		if lo != tc.lo || hi != tc.hi {
			t.Errorf("stripeOf(%d, %d, %d) = [%d, %d), want [%d, %d)", tc.slots, tc.depth, tc.q, lo, hi, tc.lo, tc.hi)
		}
	}
}

func TestPercentile(t *testing.T) {
	lats := []time.Duration{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0, 1}, {0.5, 6}, {0.99, 10}, {1, 10}} {
		if got := percentile(lats, tc.p); got != tc.want {
			t.Errorf("percentile(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if percentile(nil, 0.5) != 0 {
		t.Error("percentile of nothing")
	}
}

// countingFile counts what the engine asks of a FileDevice.
type countingFile struct {
	*FileDevice
	mu                     sync.Mutex
	reads, writes, flushes int
	maxOff                 int64
}

func (c *countingFile) ReadAt(ctx context.Context, p []byte, off int64) error {
	c.mu.Lock()
	c.reads++
	c.maxOff = max(c.maxOff, off+int64(len(p)))
	c.mu.Unlock()
	return c.FileDevice.ReadAt(ctx, p, off)
}

func (c *countingFile) WriteAt(ctx context.Context, p []byte, off int64) error {
	c.mu.Lock()
	c.writes++
	c.maxOff = max(c.maxOff, off+int64(len(p)))
	c.mu.Unlock()
	return c.FileDevice.WriteAt(ctx, p, off)
}

func (c *countingFile) Flush(ctx context.Context) error {
	c.mu.Lock()
	c.flushes++
	c.mu.Unlock()
	return c.FileDevice.Flush(ctx)
}

func TestRunOnFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := createSparse(path, 16<<20); err != nil {
		t.Fatal(err)
	}
	fd, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	ctx := context.Background()
	const span = 8 << 20
	d := 100 * time.Millisecond
	for _, tc := range []struct {
		w     Workload
		check func(m Measurement, c *countingFile) string
	}{
		{FillWorkload(), func(m Measurement, c *countingFile) string {
			// Exactly one pass over the span, then the final flush.
			if m.Writes != span>>20 || m.Reads != 0 || c.writes != span>>20 || c.flushes != 1 || c.maxOff != span {
				return "fill is not one pass"
			}
			return ""
		}},
		{Workload{Name: "r", BlockSize: 4096, QueueDepth: 4, Random: true, ReadPercent: 100, Duration: d}, func(m Measurement, c *countingFile) string {
			if m.Reads == 0 || m.Writes != 0 || int64(c.reads) != m.Reads || c.maxOff > span {
				return "reads"
			}
			return ""
		}},
		{Workload{Name: "j", BlockSize: 4096, QueueDepth: 1, FlushEvery: 1, RegionBytes: 64 << 10, Duration: d}, func(m Measurement, c *countingFile) string {
			// A flush after every write, plus the final one; all in the region.
			if m.Writes == 0 || m.Flushes != m.Writes || int64(c.flushes) != m.Flushes+1 || c.maxOff > 64<<10 {
				return "journal"
			}
			return ""
		}},
		{Workload{Name: "m", BlockSize: 8192, QueueDepth: 2, Random: true, ReadPercent: 50, Duration: d}, func(m Measurement, c *countingFile) string {
			if m.Ops() == 0 || m.ReadBytes != 8192*m.Reads || m.WriteBytes != 8192*m.Writes || m.P99 < m.P50 || m.IOPS <= 0 {
				return "mixed"
			}
			return ""
		}},
	} {
		c := &countingFile{FileDevice: fd}
		m, err := Run(ctx, c, tc.w, span)
		if err != nil {
			t.Fatalf("%s: %v", tc.w.Name, err)
		}
		if msg := tc.check(m, c); msg != "" {
			t.Errorf("%s: %s: %+v, device saw %d reads %d writes %d flushes up to %d", tc.w.Name, msg, m, c.reads, c.writes, c.flushes, c.maxOff)
		}
	}
}

// failingDevice fails its n-th write.
type failingDevice struct {
	Device
	n int
}

var errInjected = errors.New("injected")

func (f *failingDevice) WriteAt(ctx context.Context, p []byte, off int64) error {
	if f.n--; f.n == 0 {
		return errInjected
	}
	return f.Device.WriteAt(ctx, p, off)
}

func TestRunError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := createSparse(path, 4<<20); err != nil {
		t.Fatal(err)
	}
	fd, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	w := Workload{Name: "w", BlockSize: 4096, QueueDepth: 1, Random: true, Duration: time.Second}
	if _, err := Run(context.Background(), &failingDevice{Device: fd, n: 3}, w, 0); !errors.Is(err, errInjected) {
		t.Fatalf("err = %v, want the device's error", err)
	}
	if _, err := OpenFile(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenFile(missing) = %v", err)
	}
}
