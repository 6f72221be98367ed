package paths

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lunway/lunway/target/initiator"
)

// Device is what the workload engine drives: a LUN over iSCSI, an NBD
// export, or a plain file. Methods may be called concurrently.
type Device interface {
	ReadAt(ctx context.Context, p []byte, off int64) error
	WriteAt(ctx context.Context, p []byte, off int64) error
	// Flush makes completed writes durable (SYNCHRONIZE CACHE, NBD_CMD_FLUSH,
	// fdatasync).
	Flush(ctx context.Context) error
	// Size is the device's capacity in bytes.
	Size() int64
	Close() error
}

// Workload is one measured I/O pattern.
type Workload struct {
	Name string `json:"name"`
	// BlockSize of every I/O in bytes (a multiple of 4096).
	BlockSize int `json:"block_size"`
	// QueueDepth is the number of I/Os kept in flight.
	QueueDepth int `json:"queue_depth"`
	// Random picks aligned offsets uniformly; otherwise each queue slot
	// walks its own sequential stripe.
	Random bool `json:"random"`
	// ReadPercent is the share of reads (0 = all writes, 100 = all reads).
	ReadPercent int `json:"read_percent"`
	// FlushEvery issues a flush after every FlushEvery writes of a queue
	// slot, counted in that write's latency (0: never).
	FlushEvery int `json:"flush_every,omitempty"`
	// RegionBytes confines the I/O to the first RegionBytes of the span
	// (a journal's circular log); 0 uses the whole span.
	RegionBytes int64 `json:"region_bytes,omitempty"`
	// OnePass ends the run when every queue slot has written its
	// sequential stripe once (Duration still bounds it): the first write
	// of the span, which allocates every thin layer below.
	OnePass bool `json:"one_pass,omitempty"`
	// Duration of the measured phase.
	Duration time.Duration `json:"duration_ns"`
}

// Standard returns the workloads of the I/O path benchmark, each running
// for d: 4 KiB random read and write at queue depth 1 and 32, 64 KiB
// random 70/30 read/write at queue depth 8, 1 MiB sequential read and
// write at queue depth 4, and a journal: 4 KiB sequential writes in a 16 MiB
// log, each followed by a flush (a filesystem journal or database log
// committing every transaction).
//
// The first workload, fill-1m-qd4, writes the span once (1 MiB sequential
// writes at queue depth 4, bounded by 10 minutes): it measures first
// writes, which allocate every thin layer (blockmap extents, VMDK grains,
// qcow2 clusters, filesystem extents), and leaves written data for the
// reads and overwrites after it. It must stay first. The pure reads come
// next, so that every path reads the same sequentially written layout;
// random overwrites, whose count differs between paths as their speeds
// do, fragment log-structured and image layers only after that.
func Standard(d time.Duration) []Workload {
	return []Workload{
		FillWorkload(),
		{Name: "randread-4k-qd1", BlockSize: 4 << 10, QueueDepth: 1, Random: true, ReadPercent: 100, Duration: d},
		{Name: "randread-4k-qd32", BlockSize: 4 << 10, QueueDepth: 32, Random: true, ReadPercent: 100, Duration: d},
		{Name: "seqread-1m-qd4", BlockSize: 1 << 20, QueueDepth: 4, ReadPercent: 100, Duration: d},
		{Name: "randwrite-4k-qd1", BlockSize: 4 << 10, QueueDepth: 1, Random: true, Duration: d},
		{Name: "randwrite-4k-qd32", BlockSize: 4 << 10, QueueDepth: 32, Random: true, Duration: d},
		{Name: "mixed70-64k-qd8", BlockSize: 64 << 10, QueueDepth: 8, Random: true, ReadPercent: 70, Duration: d},
		{Name: "seqwrite-1m-qd4", BlockSize: 1 << 20, QueueDepth: 4, Duration: d},
		{Name: "journal-4k-flush", BlockSize: 4 << 10, QueueDepth: 1, FlushEvery: 1, RegionBytes: 16 << 20, Duration: d},
	}
}

// FillWorkload is the first pass over the span (see Standard).
func FillWorkload() Workload {
	return Workload{Name: "fill-1m-qd4", BlockSize: 1 << 20, QueueDepth: 4, OnePass: true, Duration: 10 * time.Minute}
}

// Validate reports whether w can run on a span of spanBytes.
func (w Workload) Validate(spanBytes int64) error {
	if w.Name == "" || w.BlockSize <= 0 || w.BlockSize%4096 != 0 || w.BlockSize > nbdMaxIO {
		return fmt.Errorf("%w: %q: block size %d", ErrWorkload, w.Name, w.BlockSize)
	}
	if w.QueueDepth < 1 || w.QueueDepth > 256 || w.ReadPercent < 0 || w.ReadPercent > 100 || w.FlushEvery < 0 {
		return fmt.Errorf("%w: %q: queue depth %d, read percent %d, flush every %d", ErrWorkload, w.Name, w.QueueDepth, w.ReadPercent, w.FlushEvery)
	}
	if w.Duration <= 0 {
		return fmt.Errorf("%w: %q: no duration", ErrWorkload, w.Name)
	}
	if w.region(spanBytes)/int64(w.BlockSize) < int64(w.QueueDepth) {
		return fmt.Errorf("%w: %q: a %d-byte span is too small for %d x %d bytes", ErrWorkload, w.Name, w.region(spanBytes), w.QueueDepth, w.BlockSize)
	}
	return nil
}

func (w Workload) region(span int64) int64 {
	if w.RegionBytes > 0 && w.RegionBytes < span {
		return w.RegionBytes
	}
	return span
}

// ErrWorkload reports an invalid workload.
var ErrWorkload = errors.New("paths: invalid workload")

// Measurement is what the engine saw of one workload run.
type Measurement struct {
	Reads      int64         `json:"reads"`
	Writes     int64         `json:"writes"`
	Flushes    int64         `json:"flushes"`
	ReadBytes  int64         `json:"read_bytes"`
	WriteBytes int64         `json:"write_bytes"`
	Elapsed    time.Duration `json:"elapsed_ns"`
	IOPS       float64       `json:"iops"`
	MiBps      float64       `json:"mib_per_s"`
	P50        time.Duration `json:"p50_ns"`
	P99        time.Duration `json:"p99_ns"`
}

// Ops is the number of guest reads and writes.
func (m Measurement) Ops() int64 { return m.Reads + m.Writes }

// Run measures w on dev over its first spanBytes (0: all of it). Writes
// carry pseudo-random data, so no compression or zero detection flatters
// them. It ends with a flush so that every layer below has written what it
// acknowledged before the caller reads its counters; that flush is not
// part of the elapsed time.
func Run(ctx context.Context, dev Device, w Workload, spanBytes int64) (Measurement, error) {
	if spanBytes <= 0 || spanBytes > dev.Size() {
		spanBytes = dev.Size()
	}
	if err := w.Validate(spanBytes); err != nil {
		return Measurement{}, err
	}
	slots := w.region(spanBytes) / int64(w.BlockSize)
	var (
		reads, writes, flushes atomic.Int64
		mu                     sync.Mutex
		lats                   []time.Duration
		firstErr               error
		wg                     sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	deadline := start.Add(w.Duration)
	for q := range w.QueueDepth {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(q)+1, uint64(start.UnixNano())))
			buf := make([]byte, w.BlockSize)
			for i := 0; i+8 <= len(buf); i += 8 {
				binary.LittleEndian.PutUint64(buf[i:], rng.Uint64())
			}
			lo, hi := stripeOf(slots, w.QueueDepth, q)
			next := lo
			sinceFlush := 0
			local := make([]time.Duration, 0, 4096)
			var err error
			for time.Now().Before(deadline) && ctx.Err() == nil {
				var slot int64
				if w.Random {
					slot = rng.Int64N(slots)
				} else {
					if next >= hi {
						if w.OnePass {
							break
						}
						next = lo
					}
					slot = next
					next++
				}
				off := slot * int64(w.BlockSize)
				read := w.ReadPercent >= 100 || (w.ReadPercent > 0 && rng.IntN(100) < w.ReadPercent)
				t0 := time.Now()
				if read {
					err = dev.ReadAt(ctx, buf, off)
				} else {
					binary.LittleEndian.PutUint64(buf, rng.Uint64())
					err = dev.WriteAt(ctx, buf, off)
					if sinceFlush++; err == nil && w.FlushEvery > 0 && sinceFlush >= w.FlushEvery {
						sinceFlush = 0
						err = dev.Flush(ctx)
						flushes.Add(1)
					}
				}
				if err != nil {
					break
				}
				local = append(local, time.Since(t0))
				if read {
					reads.Add(1)
				} else {
					writes.Add(1)
				}
			}
			mu.Lock()
			lats = append(lats, local...)
			if err != nil && firstErr == nil && ctx.Err() == nil {
				firstErr = err
				cancel()
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return Measurement{}, fmt.Errorf("paths: %s: %w", w.Name, firstErr)
	}
	if err := ctx.Err(); err != nil {
		return Measurement{}, err
	}
	if err := dev.Flush(ctx); err != nil {
		return Measurement{}, fmt.Errorf("paths: %s: final flush: %w", w.Name, err)
	}
	m := Measurement{
		Reads: reads.Load(), Writes: writes.Load(), Flushes: flushes.Load(),
		Elapsed: elapsed,
	}
	m.ReadBytes, m.WriteBytes = m.Reads*int64(w.BlockSize), m.Writes*int64(w.BlockSize)
	m.IOPS = float64(m.Ops()) / elapsed.Seconds()
	m.MiBps = float64(m.ReadBytes+m.WriteBytes) / elapsed.Seconds() / (1 << 20)
	m.P50, m.P99 = percentile(lats, 0.50), percentile(lats, 0.99)
	return m, nil
}

// stripeOf returns queue slot q's sequential stripe [lo, hi) of slots;
// the last slot also takes the remainder, so the stripes cover every slot.
func stripeOf(slots int64, depth, q int) (lo, hi int64) {
	stripe := slots / int64(depth)
	lo, hi = int64(q)*stripe, int64(q+1)*stripe
	if q == depth-1 {
		hi = slots
	}
	return lo, hi
}

// percentile returns the p-quantile of lats (sorting it); 0 when empty.
func percentile(lats []time.Duration, p float64) time.Duration {
	if len(lats) == 0 {
		return 0
	}
	if !slices.IsSorted(lats) {
		slices.Sort(lats)
	}
	i := int(p * float64(len(lats)))
	return lats[min(len(lats)-1, max(0, i))]
}

// FileDevice is a Device over a plain file or block device: the backing
// storage with no iSCSI at all (buffered, like Lunway's and tgt's file
// backends; Flush is fdatasync).
type FileDevice struct {
	f    *os.File
	size int64
}

// OpenFile opens path read-write as a FileDevice.
func OpenFile(path string) (*FileDevice, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("paths: %w", err)
	}
	size, err := f.Seek(0, 2)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("paths: %w", err)
	}
	return &FileDevice{f: f, size: size}, nil
}

// ReadAt implements Device.
func (d *FileDevice) ReadAt(_ context.Context, p []byte, off int64) error {
	_, err := d.f.ReadAt(p, off)
	return err
}

// WriteAt implements Device.
func (d *FileDevice) WriteAt(_ context.Context, p []byte, off int64) error {
	_, err := d.f.WriteAt(p, off)
	return err
}

// Flush implements Device with fdatasync.
func (d *FileDevice) Flush(context.Context) error { return fdatasync(d.f) }

// Size implements Device.
func (d *FileDevice) Size() int64 { return d.size }

// Close implements Device.
func (d *FileDevice) Close() error { return d.f.Close() }

// ISCSIDevice is a Device over one LUN of an iSCSI session (Lunway's Go
// initiator), for Lunway and tgt alike.
type ISCSIDevice struct {
	s    *initiator.Session
	lun  uint64
	bs   int
	size int64
}

// NewISCSIDevice reads the LUN's capacity and wraps it. The device owns s:
// Close closes it.
func NewISCSIDevice(ctx context.Context, s *initiator.Session, lun uint64) (*ISCSIDevice, error) {
	c, err := s.ReadCapacity16(ctx, lun)
	if err != nil {
		return nil, fmt.Errorf("paths: READ CAPACITY: %w", err)
	}
	if c.BlockSize == 0 || 4096%c.BlockSize != 0 {
		return nil, fmt.Errorf("paths: LUN block size %d", c.BlockSize)
	}
	return &ISCSIDevice{s: s, lun: lun, bs: int(c.BlockSize), size: int64(c.Blocks) * int64(c.BlockSize)}, nil
}

// ReadAt implements Device with READ(16).
func (d *ISCSIDevice) ReadAt(ctx context.Context, p []byte, off int64) error {
	res, err := d.s.Read16(ctx, d.lun, uint64(off/int64(d.bs)), d.bs, p)
	if err == nil {
		err = res.Err()
	}
	return err
}

// WriteAt implements Device with WRITE(16).
func (d *ISCSIDevice) WriteAt(ctx context.Context, p []byte, off int64) error {
	res, err := d.s.Write16(ctx, d.lun, uint64(off/int64(d.bs)), d.bs, p, false)
	if err == nil {
		err = res.Err()
	}
	return err
}

// Flush implements Device with SYNCHRONIZE CACHE.
func (d *ISCSIDevice) Flush(ctx context.Context) error {
	res, err := d.s.SynchronizeCache(ctx, d.lun)
	if err == nil {
		err = res.Err()
	}
	return err
}

// Size implements Device.
func (d *ISCSIDevice) Size() int64 { return d.size }

// Close logs out.
func (d *ISCSIDevice) Close() error { return d.s.Close() }
