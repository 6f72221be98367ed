package transfer

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/image"
)

// Verify reads img and dev back and compares them over the whole device:
// bytes past the image must read as zeros. Ranges that both sides map as
// holes are not read. The first difference is returned as a
// *MismatchError; Options.Progress reports the comparison.
func Verify(ctx context.Context, img image.Reader, dev blockdev.Device, opts *Options) error {
	var o Options
	if opts != nil {
		o = *opts
	}
	if err := o.Validate(); err != nil {
		return err
	}
	info := dev.Info()
	bs := int64(info.LogicalBlockSize)
	if bs <= 0 || o.Chunk%bs != 0 {
		return fmt.Errorf("transfer: chunk %d is not a multiple of the device block size %d", o.Chunk, bs)
	}
	if img.Size() > info.SizeBytes {
		return &MismatchError{Offset: info.SizeBytes}
	}
	c := &counters{start: time.Now(), total: info.SizeBytes}
	stop := reporter(c, o.Progress, o.ProgressInterval)
	defer stop()
	var first atomic.Int64
	first.Store(info.SizeBytes)
	both := func(ctx context.Context, off, n int64) ([]image.Extent, error) {
		var out []image.Extent
		if off < img.Size() {
			ext, err := img.Map(ctx, off, min(n, img.Size()-off))
			if err != nil {
				return nil, err
			}
			out = append(out, ext...)
		}
		ext, err := devMap(ctx, dev, off, n)
		if err != nil {
			return nil, err
		}
		return append(out, ext...), nil
	}
	g, gctx := newGroup(ctx)
	work := make(chan task, o.Concurrency)
	g.Go(func() error { return produce(gctx, work, info.SizeBytes, info.SizeBytes, o.Chunk, both, nil) })
	for range o.Concurrency {
		a, b := make([]byte, o.Chunk), make([]byte, o.Chunk)
		g.Go(func() error {
			for t := range work {
				if t.data && t.off < first.Load() {
					if err := gctx.Err(); err != nil {
						return err
					}
					pa, pb := a[:t.n], b[:t.n]
					if err := readImage(img, pa, t.off); err != nil {
						return err
					}
					if err := dev.ReadAt(gctx, pb, t.off); err != nil {
						return fmt.Errorf("transfer: verify: read device at %d: %w", t.off, err)
					}
					if !bytes.Equal(pa, pb) {
						i := int64(0)
						for pa[i] == pb[i] {
							i++
						}
						for off := t.off + i; ; {
							cur := first.Load()
							if off >= cur || first.CompareAndSwap(cur, off) {
								break
							}
						}
					}
					c.data.Add(t.n)
				} else {
					c.skipped.Add(t.n)
				}
				c.done.Add(t.n)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if off := first.Load(); off < info.SizeBytes {
		return &MismatchError{Offset: off}
	}
	return nil
}
