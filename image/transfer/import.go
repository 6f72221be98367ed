package transfer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/image"
)

// task is one chunk of the grid, or a run of chunks without data.
type task struct {
	off, n int64
	data   bool // the source map has data in the chunk
	// clean means the destination is known to read as zeros over the
	// task already: a run without data needs nothing, and the all-zero
	// parts of a data chunk need not be zeroed.
	clean bool
}

// mapWindow is how many chunks one call to the source's map covers.
const mapWindow = 256

// maxHoleTask bounds a run of hole chunks merged into one task: one
// allocation query (GET LBA STATUS on a remote LUN) and one zeroing call
// cover it, instead of one per chunk, while progress still moves.
const maxHoleTask = 1 << 30

// mapFunc describes [off, off+n) as ordered, contiguous extents.
type mapFunc func(ctx context.Context, off, n int64) ([]image.Extent, error)

// markChunks returns, for the chunks of [woff, wend), whether m reports
// data in any part of them (m covers [woff, mend)).
func markChunks(ctx context.Context, m mapFunc, woff, wend, mend, chunk int64) ([]bool, error) {
	marks := make([]bool, (wend-woff+chunk-1)/chunk)
	if woff >= mend {
		return marks, nil
	}
	n := min(wend, mend) - woff
	ext, err := m(ctx, woff, n)
	if err != nil {
		return nil, err
	}
	markData(ext, woff, n, chunk, func(c int64) {
		if i := c - woff/chunk; i >= 0 && i < int64(len(marks)) {
			marks[i] = true
		}
	})
	return marks, nil
}

// produce sends the chunks of [0, total) on work, classified by srcMap
// over [0, srcEnd). Consecutive chunks without data go as one task of up
// to maxHoleTask bytes. When dstMap is set (the destination's own
// allocation, over [0, total)), runs without data where the destination
// holds no data either are marked clean: nothing needs doing there, and
// the workers never ask. It closes work.
func produce(ctx context.Context, work chan<- task, total, srcEnd, chunk int64, srcMap, dstMap mapFunc) error {
	defer close(work)
	var hole task // pending run of hole chunks (n == 0: none)
	send := func(t task) error {
		select {
		case work <- t:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for woff := int64(0); woff < total; woff += mapWindow * chunk {
		wend := min(woff+mapWindow*chunk, total)
		isData, err := markChunks(ctx, srcMap, woff, wend, srcEnd, chunk)
		if err != nil {
			return err
		}
		var dstData []bool
		if dstMap != nil {
			if dstData, err = markChunks(ctx, dstMap, woff, wend, total, chunk); err != nil {
				return err
			}
		}
		for i, d := range isData {
			off := woff + int64(i)*chunk
			t := task{off: off, n: min(chunk, wend-off), data: d, clean: dstData != nil && !dstData[i]}
			if !d && hole.n > 0 && hole.off+hole.n == off && hole.clean == t.clean && hole.n+t.n <= maxHoleTask {
				hole.n += t.n
				continue
			}
			if hole.n > 0 {
				if err := send(hole); err != nil {
					return err
				}
				hole = task{}
			}
			if !d {
				hole = t
				continue
			}
			if err := send(t); err != nil {
				return err
			}
		}
	}
	if hole.n > 0 {
		return send(hole)
	}
	return nil
}

// readFull reads n bytes at off from an image, zero-filling past its end.
func readImage(src image.Reader, p []byte, off int64) error {
	avail := max(0, min(int64(len(p)), src.Size()-off))
	if avail > 0 {
		m, err := src.ReadAt(p[:avail], off)
		if int64(m) < avail {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("transfer: read image at %d: %w", off, err)
		}
	}
	clear(p[avail:])
	return nil
}

// Import copies the image src onto dst, which must be at least as large
// (ErrTooSmall otherwise). Bytes of dst past the image read as zeros
// afterwards, like the image's holes. dst is flushed at the end.
func Import(ctx context.Context, src image.Reader, dst blockdev.Device, opts *Options) (Result, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if err := o.Validate(); err != nil {
		return Result{}, err
	}
	info := dst.Info()
	bs := int64(info.LogicalBlockSize)
	if bs <= 0 || o.Chunk%bs != 0 {
		return Result{}, fmt.Errorf("transfer: chunk %d is not a multiple of the device block size %d", o.Chunk, bs)
	}
	if span := (src.Size() + bs - 1) / bs * bs; span > info.SizeBytes {
		return Result{}, fmt.Errorf("%w: image of %d bytes, device of %d", ErrTooSmall, src.Size(), info.SizeBytes)
	}
	c := &counters{start: time.Now(), total: info.SizeBytes}
	stop := reporter(c, o.Progress, o.ProgressInterval)
	g, gctx := newGroup(ctx)
	work := make(chan task, o.Concurrency)
	// The destination's allocation, read a window at a time by the
	// producer: holes over unallocated ranges then cost no I/O at all.
	var dstMap mapFunc
	if o.DestinationZeroed {
		dstMap = func(_ context.Context, off, n int64) ([]image.Extent, error) {
			return []image.Extent{{Off: off, Len: n, Kind: image.Hole}}, nil
		}
	} else if _, ok := dst.(blockdev.AllocationStatuser); ok {
		dstMap = func(ctx context.Context, off, n int64) ([]image.Extent, error) { return devMap(ctx, dst, off, n) }
	}
	g.Go(func() error { return produce(gctx, work, info.SizeBytes, src.Size(), o.Chunk, src.Map, dstMap) })
	for range o.Concurrency {
		w := &importer{src: src, dst: dst, o: &o, c: c,
			buf: make([]byte, o.Chunk)}
		if o.Resume {
			w.cmp = make([]byte, o.Chunk)
		}
		g.Go(func() error {
			for t := range work {
				if err := w.do(gctx, t); err != nil {
					return err
				}
				c.done.Add(t.n)
			}
			return nil
		})
	}
	err := g.Wait()
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		if ferr := dst.Flush(ctx); ferr != nil {
			err = fmt.Errorf("transfer: flush: %w", ferr)
		}
	}
	stop()
	res := Result{Progress: c.snapshot()}
	if err != nil {
		return res, err
	}
	if o.Verify {
		vo := o
		vo.Progress = nil // the copy's progress ended at 100%
		if err := Verify(ctx, src, dst, &vo); err != nil {
			return res, err
		}
		res.Verified = true
	}
	return res, nil
}

// importer is one worker's state.
type importer struct {
	src      image.Reader
	dst      blockdev.Device
	o        *Options
	c        *counters
	buf, cmp []byte
	zeros    []byte
}

func (w *importer) do(ctx context.Context, t task) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !t.data && t.clean {
		w.c.skipped.Add(t.n)
		return nil
	}
	if !t.data {
		return w.hole(ctx, t.off, t.n)
	}
	buf := w.buf[:t.n]
	if err := readImage(w.src, buf, t.off); err != nil {
		return err
	}
	zero := w.hole
	if t.clean {
		zero = func(_ context.Context, _, n int64) error {
			w.c.skipped.Add(n)
			return nil
		}
	}
	prev := 0
	for _, r := range dataRuns(buf) {
		if r[0] > prev {
			if err := zero(ctx, t.off+int64(prev), int64(r[0]-prev)); err != nil {
				return err
			}
		}
		if err := w.write(ctx, buf[r[0]:r[1]], t.off+int64(r[0])); err != nil {
			return err
		}
		prev = r[1]
	}
	if int64(prev) < t.n {
		return zero(ctx, t.off+int64(prev), t.n-int64(prev))
	}
	return nil
}

func (w *importer) write(ctx context.Context, p []byte, off int64) error {
	if w.o.Resume {
		cur := w.cmp[:len(p)]
		if err := w.dst.ReadAt(ctx, cur, off); err != nil {
			return fmt.Errorf("transfer: read destination at %d: %w", off, err)
		}
		if bytes.Equal(cur, p) {
			w.c.unchanged.Add(int64(len(p)))
			return nil
		}
	}
	if err := w.dst.WriteAt(ctx, p, off, 0); err != nil {
		return fmt.Errorf("transfer: write destination at %d: %w", off, err)
	}
	w.c.data.Add(int64(len(p)))
	return nil
}

// hole makes [off, off+n) of the destination read as zeros, doing nothing
// where it already does.
func (w *importer) hole(ctx context.Context, off, n int64) error {
	w.c.skipped.Add(n)
	if w.o.DestinationZeroed {
		return nil
	}
	if _, ok := w.dst.(blockdev.AllocationStatuser); ok {
		ext, err := devMap(ctx, w.dst, off, n)
		if err != nil {
			return err
		}
		for _, e := range ext {
			if e.Kind == image.Data {
				if err := w.zero(ctx, e.Off, e.Len); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if w.o.Resume {
		// Check what is there, a chunk at a time.
		for pos := off; pos < off+n; pos += w.o.Chunk {
			k := min(w.o.Chunk, off+n-pos)
			cur := w.cmp[:k]
			if err := w.dst.ReadAt(ctx, cur, pos); err != nil {
				return fmt.Errorf("transfer: read destination at %d: %w", pos, err)
			}
			if !image.IsZero(cur) {
				if err := w.zero(ctx, pos, k); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return w.zero(ctx, off, n)
}

// zero writes zeros the cheapest way the device offers.
func (w *importer) zero(ctx context.Context, off, n int64) error {
	if zw, ok := w.dst.(blockdev.ZeroWriter); ok {
		err := zw.WriteZeroes(ctx, off, n, true, 0)
		if err == nil || !errors.Is(err, blockdev.ErrNotSupported) {
			if err != nil {
				return fmt.Errorf("transfer: write zeroes at %d: %w", off, err)
			}
			return nil
		}
	}
	if um, ok := w.dst.(blockdev.Unmapper); ok {
		err := um.Unmap(ctx, off, n)
		if err == nil || !errors.Is(err, blockdev.ErrNotSupported) {
			if err != nil {
				return fmt.Errorf("transfer: unmap at %d: %w", off, err)
			}
			return nil
		}
	}
	if w.zeros == nil {
		w.zeros = make([]byte, w.o.Chunk)
	}
	for pos := off; pos < off+n; pos += w.o.Chunk {
		k := min(w.o.Chunk, off+n-pos)
		if err := w.dst.WriteAt(ctx, w.zeros[:k], pos, 0); err != nil {
			return fmt.Errorf("transfer: write zeros at %d: %w", pos, err)
		}
	}
	return nil
}
