package transfer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/image"
)

// Options configure Import, Export and Verify. Nil means defaults.
type Options struct {
	// Concurrency is the number of I/Os in flight (default 4).
	Concurrency int
	// Chunk is the unit of transfer in bytes (default 1 MiB). It must be a
	// multiple of the device's logical block size and of 64 KiB.
	Chunk int64
	// Progress, when set, is called at most every ProgressInterval and
	// once at the end, never concurrently with itself.
	Progress func(Progress)
	// ProgressInterval defaults to 250 ms.
	ProgressInterval time.Duration
	// Verify reads both sides back after the copy and compares them;
	// a difference is reported as a *MismatchError. (Export verifies in
	// ExportFile, which can reopen the image it wrote.) Progress is not
	// called during this second pass; call Verify directly to watch it.
	Verify bool
	// Resume (import) reads each data chunk of the destination first and
	// skips the write when it already holds the same bytes: a restarted
	// import then only writes what the interrupted one did not.
	Resume bool
	// DestinationZeroed (import) promises that the destination reads as
	// zeros everywhere (a freshly created volume), so holes are skipped
	// without asking or zeroing. Never set it when restarting an import.
	DestinationZeroed bool
}

// Validate checks the options and fills in defaults.
func (o *Options) Validate() error {
	if o.Concurrency == 0 {
		o.Concurrency = 4
	}
	if o.Chunk == 0 {
		o.Chunk = 1 << 20
	}
	if o.ProgressInterval == 0 {
		o.ProgressInterval = 250 * time.Millisecond
	}
	if o.Concurrency < 1 || o.Concurrency > 256 {
		return fmt.Errorf("transfer: concurrency %d: must be 1..256", o.Concurrency)
	}
	if o.Chunk < segment || o.Chunk > 64<<20 || o.Chunk%segment != 0 {
		return fmt.Errorf("transfer: chunk %d: must be a multiple of %d up to 64 MiB", o.Chunk, segment)
	}
	return nil
}

// segment is the granularity of zero detection inside a data chunk.
const segment = 64 << 10

// Progress is a snapshot of a transfer.
type Progress struct {
	// Done and Total are bytes of the virtual disk processed and to process.
	Done, Total int64
	// Data is bytes of data copied; Skipped is bytes left as holes (never
	// read, or found to be zeros); Unchanged is bytes a resumed import
	// found already in place.
	Data, Skipped, Unchanged int64
	// Elapsed since the start.
	Elapsed time.Duration
}

// Rate returns the processing rate in bytes per second.
func (p Progress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Done) / p.Elapsed.Seconds()
}

// DataRate returns the rate of data copied, in bytes per second.
func (p Progress) DataRate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Data) / p.Elapsed.Seconds()
}

// ETA estimates the remaining time from the rate so far.
func (p Progress) ETA() time.Duration {
	r := p.Rate()
	if r <= 0 || p.Done >= p.Total {
		return 0
	}
	return time.Duration(float64(p.Total-p.Done) / r * float64(time.Second))
}

// Result is the final progress of a transfer.
type Result struct {
	Progress
	// Verified reports that the copy was read back and compared equal.
	Verified bool
}

// Errors.
var (
	// ErrTooSmall: the destination is smaller than the source.
	ErrTooSmall = errors.New("transfer: destination smaller than source")
)

// MismatchError reports the first differing byte found by verification.
type MismatchError struct {
	Offset int64
}

func (e *MismatchError) Error() string {
	return "transfer: verify: data differs at byte offset " + strconv.FormatInt(e.Offset, 10)
}

// counters are the shared progress counters of one transfer.
type counters struct {
	start                          time.Time
	total                          int64
	done, data, skipped, unchanged atomic.Int64
}

func (c *counters) snapshot() Progress {
	return Progress{
		Done: c.done.Load(), Total: c.total,
		Data: c.data.Load(), Skipped: c.skipped.Load(), Unchanged: c.unchanged.Load(),
		Elapsed: time.Since(c.start),
	}
}

// reporter calls fn with snapshots every interval until stop is called;
// stop waits for the goroutine and makes the final call.
func reporter(c *counters, fn func(Progress), interval time.Duration) (stop func()) {
	if fn == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fn(c.snapshot())
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		fn(c.snapshot())
	}
}

// group runs functions on goroutines and collects the first error, which
// cancels the group's context.
type group struct {
	wg     sync.WaitGroup
	cancel context.CancelFunc
	once   sync.Once
	err    error
}

func newGroup(ctx context.Context) (*group, context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	return &group{cancel: cancel}, ctx
}

func (g *group) Go(fn func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := fn(); err != nil {
			g.fail(err)
		}
	}()
}

func (g *group) fail(err error) {
	g.once.Do(func() {
		g.err = err
		g.cancel()
	})
}

// Wait waits for every goroutine and returns the first error.
func (g *group) Wait() error {
	g.wg.Wait()
	g.cancel()
	return g.err
}

// zeroRuns splits buf into runs of non-zero 64 KiB segments (the last one
// may be short) and returns them as [start, end) offsets within buf.
func dataRuns(buf []byte) [][2]int {
	var runs [][2]int
	for s := 0; s < len(buf); s += segment {
		e := min(s+segment, len(buf))
		if image.IsZero(buf[s:e]) {
			continue
		}
		if k := len(runs) - 1; k >= 0 && runs[k][1] == s {
			runs[k][1] = e
		} else {
			runs = append(runs, [2]int{s, e})
		}
	}
	return runs
}

// chunkKinds classifies each chunk of [off, off+length) on a grid of
// chunk bytes from an ordered extent list: true when any part holds data.
func markData(ext []image.Extent, off, length, chunk int64, mark func(c int64)) {
	for _, e := range ext {
		if e.Kind != image.Data {
			continue
		}
		lo, hi := max(e.Off, off), min(e.End(), off+length)
		for c := lo / chunk; c*chunk < hi; c++ {
			mark(c)
		}
	}
}

// devMap returns the allocation of [off, off+n) of a device as image
// extents: Mapped is data, everything else a hole. Without
// AllocationStatuser everything is data.
func devMap(ctx context.Context, dev blockdev.Device, off, n int64) ([]image.Extent, error) {
	as, ok := dev.(blockdev.AllocationStatuser)
	if !ok {
		return []image.Extent{{Off: off, Len: n, Kind: image.Data}}, nil
	}
	var out image.ExtentList
	for pos, end := off, off+n; pos < end; {
		ext, err := as.AllocationStatus(ctx, pos, end-pos)
		if err != nil {
			if errors.Is(err, blockdev.ErrNotSupported) {
				out.Add(pos, end-pos, image.Data)
				break
			}
			return nil, fmt.Errorf("transfer: allocation status at %d: %w", pos, err)
		}
		if len(ext) == 0 {
			return nil, fmt.Errorf("transfer: allocation status at %d: no extents", pos)
		}
		for _, e := range ext {
			if e.Off != pos || e.Len <= 0 || e.Len > end-pos {
				return nil, fmt.Errorf("transfer: allocation status at %d: bad extent %+v", pos, e)
			}
			k := image.Hole
			if e.State == blockdev.Mapped {
				k = image.Data
			}
			out.Add(pos, e.Len, k)
			pos += e.Len
		}
	}
	return out, nil
}
