package transfer_test

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/mem"
	"github.com/lunway/lunway/image"
	"github.com/lunway/lunway/image/internal/imagetest"
	"github.com/lunway/lunway/image/raw"
	"github.com/lunway/lunway/image/transfer"
)

// plainDev hides every optional capability of the Device it wraps.
type plainDev struct{ d blockdev.Device }

func (p plainDev) ReadAt(ctx context.Context, b []byte, off int64) error {
	return p.d.ReadAt(ctx, b, off)
}
func (p plainDev) WriteAt(ctx context.Context, b []byte, off int64, f blockdev.WriteFlags) error {
	return p.d.WriteAt(ctx, b, off, f)
}
func (p plainDev) Flush(ctx context.Context) error { return p.d.Flush(ctx) }
func (p plainDev) Info() blockdev.Info             { return p.d.Info() }
func (p plainDev) Close() error                    { return p.d.Close() }

// slowDev adds latency to every read and write, counts writes, and calls
// onWrite (if set) after each.
type slowDev struct {
	*mem.Device
	delay   time.Duration
	writes  atomic.Int64
	onWrite func(n int64)
}

func (s *slowDev) sleep(ctx context.Context) error {
	select {
	case <-time.After(s.delay):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *slowDev) ReadAt(ctx context.Context, b []byte, off int64) error {
	if err := s.sleep(ctx); err != nil {
		return err
	}
	return s.Device.ReadAt(ctx, b, off)
}

func (s *slowDev) WriteAt(ctx context.Context, b []byte, off int64, f blockdev.WriteFlags) error {
	if err := s.sleep(ctx); err != nil {
		return err
	}
	err := s.Device.WriteAt(ctx, b, off, f)
	n := s.writes.Add(1)
	if s.onWrite != nil {
		s.onWrite(n)
	}
	return err
}

func newMem(t *testing.T, size int64) *mem.Device {
	t.Helper()
	d, err := mem.New(size, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func readDev(t *testing.T, d blockdev.Device) []byte {
	t.Helper()
	b := make([]byte, d.Info().SizeBytes)
	if err := d.ReadAt(context.Background(), b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

func mappedBytes(t *testing.T, d *mem.Device) int64 {
	t.Helper()
	ext, err := d.AllocationStatus(context.Background(), 0, d.Info().SizeBytes)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range ext {
		if e.State == blockdev.Mapped {
			n += e.Len
		}
	}
	return n
}

// chunksWithData counts the 64 KiB chunks of b holding a non-zero byte.
func chunksWithData(b []byte) int64 {
	var n int64
	for off := 0; off < len(b); off += 64 << 10 {
		if !image.IsZero(b[off:min(off+64<<10, len(b))]) {
			n += 64 << 10
		}
	}
	return n
}

func rawImage(t *testing.T, data []byte) image.Reader {
	t.Helper()
	r, err := raw.Open(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestImportSparse(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		opts transfer.Options
		dev  func(t *testing.T, size int64) blockdev.Device
		used bool // destination pre-filled with garbage
	}{
		{"fresh-zeroed", transfer.Options{DestinationZeroed: true}, func(t *testing.T, s int64) blockdev.Device { return newMem(t, s) }, false},
		{"fresh-allocation-status", transfer.Options{}, func(t *testing.T, s int64) blockdev.Device { return newMem(t, s) }, false},
		{"used-thin", transfer.Options{Concurrency: 8}, func(t *testing.T, s int64) blockdev.Device { return newMem(t, s) }, true},
		{"used-plain", transfer.Options{Concurrency: 1, Chunk: 256 << 10}, func(t *testing.T, s int64) blockdev.Device { return plainDev{newMem(t, s)} }, true},
		{"used-plain-resume", transfer.Options{Resume: true}, func(t *testing.T, s int64) blockdev.Device { return plainDev{newMem(t, s)} }, true},
		{"verify", transfer.Options{Verify: true}, func(t *testing.T, s int64) blockdev.Device { return newMem(t, s) }, true},
		{"4k-blocks", transfer.Options{}, func(t *testing.T, s int64) blockdev.Device {
			d, err := mem.New(s, &mem.Options{LogicalBlockSize: 4096})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			return d
		}, true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const imgSize = 7<<20 + 512 // not a chunk multiple
			data := imagetest.RandomSparse(imgSize, 0.2, uint64(i+1))
			dev := tc.dev(t, 8<<20)
			if tc.used {
				junk := bytes.Repeat([]byte{0xee}, 8<<20)
				if err := dev.WriteAt(ctx, junk, 0, 0); err != nil {
					t.Fatal(err)
				}
			}
			var calls atomic.Int64
			var last transfer.Progress
			tc.opts.Progress = func(p transfer.Progress) { calls.Add(1); last = p }
			res, err := transfer.Import(ctx, rawImage(t, data), dev, &tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			want := append(append([]byte(nil), data...), make([]byte, 8<<20-imgSize)...)
			imagetest.Equal(t, "device", readDev(t, dev), want)
			if calls.Load() == 0 || last.Done != 8<<20 || last.Total != 8<<20 {
				t.Fatalf("progress: %d calls, last %+v", calls.Load(), last)
			}
			if res.Data > chunksWithData(data) {
				t.Fatalf("copied %d data bytes, more than the %d in non-zero segments", res.Data, chunksWithData(data))
			}
			if res.Data+res.Skipped+res.Unchanged != 8<<20 {
				t.Fatalf("data %d + skipped %d + unchanged %d != device size", res.Data, res.Skipped, res.Unchanged)
			}
			if tc.opts.Verify != res.Verified {
				t.Fatalf("verified %v", res.Verified)
			}
			if m, ok := dev.(*mem.Device); ok {
				if got := mappedBytes(t, m); got > chunksWithData(data) {
					t.Fatalf("device maps %d bytes, data only in %d: holes were written", got, chunksWithData(data))
				}
			}
		})
	}
}

// TestImportHolesNotRead checks that chunks the map calls holes are never
// read: a reader that fails on any read of a hole.
func TestImportHolesNotRead(t *testing.T) {
	data := make([]byte, 4<<20)
	copy(data[1<<20:], bytes.Repeat([]byte{7}, 4096))
	r := &holeTrap{Reader: rawImage(t, data), data: [2]int64{1 << 20, 1<<20 + 4096}}
	dev := newMem(t, 4<<20)
	if _, err := transfer.Import(context.Background(), r, dev, &transfer.Options{DestinationZeroed: true}); err != nil {
		t.Fatal(err)
	}
	imagetest.Equal(t, "device", readDev(t, dev), data)
}

type holeTrap struct {
	image.Reader
	data [2]int64
}

func (h *holeTrap) Map(ctx context.Context, off, n int64) ([]image.Extent, error) {
	var l image.ExtentList
	end := off + n
	l.Add(off, max(0, min(end, h.data[0])-off), image.Hole)
	lo, hi := max(off, h.data[0]), min(end, h.data[1])
	if lo < hi {
		l.Add(lo, hi-lo, image.Data)
	}
	l.Add(max(off, h.data[1]), end-max(off, h.data[1]), image.Hole)
	return l, nil
}

func (h *holeTrap) ReadAt(p []byte, off int64) (int, error) {
	// Only the 1 MiB chunk holding the data may be read.
	if off+int64(len(p)) <= 1<<20 || off >= 2<<20 {
		return 0, errors.New("read of a hole")
	}
	return h.Reader.ReadAt(p, off)
}

func TestImportTooSmall(t *testing.T) {
	_, err := transfer.Import(context.Background(), rawImage(t, make([]byte, 2<<20)), newMem(t, 1<<20), nil)
	if !errors.Is(err, transfer.ErrTooSmall) {
		t.Fatalf("err %v, want ErrTooSmall", err)
	}
}

// TestImportRestart interrupts an import after a few writes, then runs it
// again with Resume: the result is exact and the chunks already in place
// are not rewritten.
func TestImportRestart(t *testing.T) {
	data := imagetest.RandomSparse(16<<20, 0.6, 42)
	dev := &slowDev{Device: newMem(t, 16<<20), delay: time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	dev.onWrite = func(n int64) {
		if n == 20 {
			cancel()
		}
	}
	_, err := transfer.Import(ctx, rawImage(t, data), dev, &transfer.Options{Chunk: 128 << 10})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted import: %v, want context.Canceled", err)
	}
	dev.onWrite = nil
	dev.writes.Store(0)
	res, err := transfer.Import(context.Background(), rawImage(t, data), dev, &transfer.Options{Chunk: 128 << 10, Resume: true, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	imagetest.Equal(t, "device", readDev(t, dev.Device), data)
	if res.Unchanged == 0 || !res.Verified {
		t.Fatalf("resumed import: %+v: want some unchanged bytes and verified", res)
	}
}

// TestCancelPrompt cancels a transfer to a slow device and checks that it
// returns promptly and leaves no goroutine behind.
func TestCancelPrompt(t *testing.T) {
	before := runtime.NumGoroutine()
	const size = 32 << 20
	data := imagetest.RandomSparse(size, 1, 3)
	dev := &slowDev{Device: newMem(t, size), delay: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := transfer.Import(ctx, rawImage(t, data), dev, &transfer.Options{Concurrency: 8, Chunk: 64 << 10})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cancel took %v", d)
	}
	src := newMem(t, size)
	if err := src.WriteAt(context.Background(), data, 0, 0); err != nil {
		t.Fatal(err)
	}
	slow := &slowDev{Device: src, delay: 20 * time.Millisecond}
	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel2)
	w, _ := raw.NewWriter(&bytes.Buffer{}, size)
	if _, err := transfer.Export(ctx2, slow, w, &transfer.Options{Concurrency: 8, Chunk: 64 << 10}); !errors.Is(err, context.Canceled) {
		t.Fatalf("export err %v", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines left, %d before", n, before)
	}
}

// TestVerifyMismatch corrupts one byte after an import.
func TestVerifyMismatch(t *testing.T) {
	ctx := context.Background()
	data := imagetest.RandomSparse(4<<20, 0.3, 5)
	dev := newMem(t, 4<<20)
	if _, err := transfer.Import(ctx, rawImage(t, data), dev, nil); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{3<<20 + 777, 12345} { // data region and possibly a hole
		b := make([]byte, 512)
		blk := off &^ 511
		if err := dev.ReadAt(ctx, b, blk); err != nil {
			t.Fatal(err)
		}
		b[off-blk] ^= 0x40
		if err := dev.WriteAt(ctx, b, blk, 0); err != nil {
			t.Fatal(err)
		}
		err := transfer.Verify(ctx, rawImage(t, data), dev, &transfer.Options{Concurrency: 3})
		var me *transfer.MismatchError
		if !errors.As(err, &me) || me.Offset != off {
			t.Fatalf("Verify: %v, want mismatch at %d", err, off)
		}
		b[off-blk] ^= 0x40
		if err := dev.WriteAt(ctx, b, blk, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := transfer.Verify(ctx, rawImage(t, data), dev, nil); err != nil {
		t.Fatal(err)
	}
}

// recWriter records what a writer receives and checks the ordering.
type recWriter struct {
	size int64
	buf  []byte
	next int64
	err  error
	mu   sync.Mutex
}

func (w *recWriter) WriteAt(p []byte, off int64) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if off < w.next && w.err == nil {
		w.err = errors.New("out of order")
	}
	copy(w.buf[off:], p)
	w.next = off + int64(len(p))
	return len(p), nil
}
func (w *recWriter) Size() int64  { return w.size }
func (w *recWriter) Close() error { return nil }

// TestExportOrderedSparse exports a device with holes: the writer sees
// increasing offsets only, and unallocated or zero ranges are not written.
func TestExportOrderedSparse(t *testing.T) {
	ctx := context.Background()
	for _, plain := range []bool{false, true} {
		const size = 12 << 20
		data := imagetest.RandomSparse(size, 0.25, 9)
		m := newMem(t, size)
		if err := m.WriteAt(ctx, data, 0, 0); err != nil {
			t.Fatal(err)
		}
		var dev blockdev.Device = m
		if plain {
			dev = plainDev{m}
		}
		w := &recWriter{size: size, buf: make([]byte, size)}
		res, err := transfer.Export(ctx, dev, w, &transfer.Options{Concurrency: 6, Chunk: 128 << 10})
		if err != nil || w.err != nil {
			t.Fatal(err, w.err)
		}
		imagetest.Equal(t, "exported", w.buf, data)
		if res.Data > chunksWithData(data) {
			t.Fatalf("wrote %d bytes, only %d in non-zero segments", res.Data, chunksWithData(data))
		}
	}
}

func TestProgressBar(t *testing.T) {
	var out strings.Builder
	b := transfer.NewBarWriter(&out, true, 100, "import x.qcow2")
	b.Update(transfer.Progress{Done: 1 << 30, Total: 4 << 30, Data: 256 << 20, Elapsed: 2 * time.Second})
	b.Finish(transfer.Progress{Done: 4 << 30, Total: 4 << 30, Data: 1 << 30, Elapsed: 8 * time.Second})
	s := out.String()
	for _, want := range []string{"\rimport x.qcow2 [", " 25%", "1.0 GiB/4.0 GiB", "512.0 MiB/s", "ETA 0:06", "100%", "in 0:08", "\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("bar output %q lacks %q", s, want)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(s), "\r") {
		if len(line) > 99 {
			t.Errorf("line of %d chars wider than the terminal: %q", len(line), line)
		}
	}
	var quiet strings.Builder
	q := transfer.NewBarWriter(&quiet, false, 100, "x")
	q.Update(transfer.Progress{Done: 1, Total: 2})
	q.Finish(transfer.Progress{Done: 2, Total: 2})
	if quiet.Len() != 0 {
		t.Fatalf("bar on a non-terminal wrote %q", quiet.String())
	}
}
