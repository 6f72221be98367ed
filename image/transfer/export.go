package transfer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/image"
	"github.com/lunway/lunway/image/disk"
)

// job is a chunk in flight through the export pipeline.
type job struct {
	t    task
	buf  []byte
	runs [][2]int
	err  error
	done chan struct{}
}

// Export copies dev into the image writer dst, whose size must be at
// least the device's (ErrTooSmall otherwise). Unallocated ranges and
// all-zero segments stay holes. It does not Close dst: the caller
// finishes the image (disk.Create's writers sync and close their files).
func Export(ctx context.Context, dev blockdev.Device, dst image.Writer, opts *Options) (Result, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if err := o.Validate(); err != nil {
		return Result{}, err
	}
	info := dev.Info()
	bs := int64(info.LogicalBlockSize)
	if bs <= 0 || o.Chunk%bs != 0 {
		return Result{}, fmt.Errorf("transfer: chunk %d is not a multiple of the device block size %d", o.Chunk, bs)
	}
	if dst.Size() < info.SizeBytes {
		return Result{}, fmt.Errorf("%w: image of %d bytes, device of %d", ErrTooSmall, dst.Size(), info.SizeBytes)
	}
	size := info.SizeBytes
	c := &counters{start: time.Now(), total: size}
	stop := reporter(c, o.Progress, o.ProgressInterval)
	g, gctx := newGroup(ctx)

	tasks := make(chan task, o.Concurrency)
	g.Go(func() error {
		return produce(gctx, tasks, size, size, o.Chunk, func(ctx context.Context, off, n int64) ([]image.Extent, error) {
			return devMap(ctx, dev, off, n)
		}, nil)
	})
	// Buffers bound the memory in flight: readers run ahead of the writer
	// by at most 2*Concurrency chunks.
	free := make(chan []byte, 2*o.Concurrency)
	for range cap(free) {
		free <- make([]byte, o.Chunk)
	}
	ordered := make(chan *job, 2*o.Concurrency)
	work := make(chan *job, o.Concurrency)
	g.Go(func() error { // dispatcher
		defer close(ordered)
		defer close(work)
		for t := range tasks {
			j := &job{t: t, done: make(chan struct{})}
			if t.data {
				select {
				case j.buf = <-free:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			select {
			case ordered <- j:
			case <-gctx.Done():
				return gctx.Err()
			}
			if !t.data {
				close(j.done)
				continue
			}
			select {
			case work <- j:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for range o.Concurrency { // readers
		g.Go(func() error {
			for j := range work {
				p := j.buf[:j.t.n]
				j.err = gctx.Err()
				if j.err == nil {
					if err := dev.ReadAt(gctx, p, j.t.off); err != nil {
						j.err = fmt.Errorf("transfer: read device at %d: %w", j.t.off, err)
					} else {
						j.runs = dataRuns(p)
					}
				}
				close(j.done)
				if j.err != nil {
					return j.err
				}
			}
			return nil
		})
	}
	g.Go(func() error { // the writer, in order
		for j := range ordered {
			select {
			case <-j.done:
			case <-gctx.Done():
				return gctx.Err()
			}
			if j.err != nil {
				return j.err
			}
			written := int64(0)
			for _, r := range j.runs {
				if _, err := dst.WriteAt(j.buf[r[0]:r[1]], j.t.off+int64(r[0])); err != nil {
					return fmt.Errorf("transfer: write image at %d: %w", j.t.off+int64(r[0]), err)
				}
				written += int64(r[1] - r[0])
			}
			c.data.Add(written)
			c.skipped.Add(j.t.n - written)
			c.done.Add(j.t.n)
			if j.buf != nil {
				free <- j.buf
			}
		}
		return nil
	})
	err := g.Wait()
	if err == nil {
		err = ctx.Err()
	}
	stop()
	return Result{Progress: c.snapshot()}, err
}

// ExportFile exports dev to a new image file at path (see disk.Create),
// finishes it, and with Options.Verify reopens it and compares it with
// the device.
func ExportFile(ctx context.Context, dev blockdev.Device, path string, create *disk.CreateOptions, opts *Options) (Result, error) {
	w, err := disk.Create(path, dev.Info().SizeBytes, create)
	if err != nil {
		return Result{}, err
	}
	res, err := Export(ctx, dev, w, opts)
	if cerr := w.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("transfer: finish %s: %w", path, cerr)
	}
	if err != nil || opts == nil || !opts.Verify {
		return res, err
	}
	r, err := disk.Open(path, &disk.OpenOptions{Format: create.Format})
	if err != nil {
		return res, fmt.Errorf("transfer: verify: reopen %s: %w", path, err)
	}
	defer r.Close()
	vo := *opts
	vo.Progress = nil
	if err := Verify(ctx, r, dev, &vo); err != nil {
		return res, err
	}
	res.Verified = true
	return res, nil
}

// ImportFile opens the image at path (format detected by content) and
// imports it onto dev.
func ImportFile(ctx context.Context, path string, dev blockdev.Device, opts *Options) (Result, error) {
	r, err := disk.Open(path, nil)
	if err != nil {
		return Result{}, err
	}
	res, err := Import(ctx, r, dev, opts)
	return res, errors.Join(err, r.Close())
}
