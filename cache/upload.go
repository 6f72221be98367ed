package cache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/lunway/lunway/backend"
)

// The uploader applies logged records to the store strictly in log order,
// one batch at a time. A batch is a run of consecutive records on one
// object; the store gets the run's net effect in one operation (the
// object's final content, or its deletion), which is the state after the
// run's last record. So every state the store passes through is the state
// after some prefix of the log: after a crash, or with the local disk
// lost, the volume above sees a prefix of its acknowledged writes.
//
// An object built by WriteAt (a log-structured volume's open segment) is
// rebuilt in memory (an "image" of what the store holds, kept between
// batches) and uploaded whole. While such a run is the last thing in the
// log, the uploader waits up to Options.UploadHold for more of it, so
// that a segment that grows by small appends is not uploaded once per
// append. Stores that are Overwriters get the writes themselves instead.

// uploader is the single goroutine that applies the log.
func (c *Cache) uploader(ctx context.Context) {
	defer c.bg.wg.Done()
	imgs := newImages(c.opts.ImageBytes)
	for {
		b := c.nextBatch(ctx)
		if b == nil {
			return
		}
		// The store's object changes: the read cache must not take
		// chunks of it meanwhile (a read could mix versions). The batch's
		// records stay in the overlay until finishBatch, so the chunks
		// cached before still serve every byte the batch leaves alone.
		c.rc.beginChange(b[0].name, true)
		content, size, err := c.applyBatch(ctx, b, imgs)
		c.rc.endChange(b[0].name, true)
		if err != nil {
			return // closing
		}
		c.finishBatch(b, content, size)
	}
}

// nextBatch waits for the next run of durable records on one object.
func (c *Cache) nextBatch(ctx context.Context) []*rec {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if ctx.Err() != nil {
			return nil
		}
		durable := c.sy.durable.Load()
		q := c.mu.queue
		if len(q) > 0 && q[0].seq <= durable {
			head := q[0]
			// j: the durable run on head's object (the batch); all: the
			// run including records still being synced.
			j, bytes, writes := 1, head.data.n, head.kind == kindWriteAt
			for j < len(q) && q[j].seq <= durable && q[j].name == head.name && bytes+q[j].data.n <= c.opts.MaxUploadBatch {
				bytes += q[j].data.n
				writes = writes || q[j].kind == kindWriteAt
				j++
			}
			all := j
			for all < len(q) && q[all].name == head.name {
				all++
			}
			if wait := c.holdLocked(q, all, writes); wait > 0 {
				t := time.NewTimer(wait)
				ch := c.mu.changed
				c.mu.Unlock()
				select {
				case <-ch:
				case <-t.C:
				case <-ctx.Done():
				}
				t.Stop()
				c.mu.Lock()
				continue
			}
			return append([]*rec(nil), q[:j]...)
		}
		ch := c.mu.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		c.mu.Lock()
	}
}

// holdLocked says how long to wait for more writes to a run of WriteAts
// that ends the log (all: the run's length in q), 0 to upload now.
func (c *Cache) holdLocked(q []*rec, all int, writes bool) time.Duration {
	if !writes || all < len(q) || c.innerOW != nil || c.opts.UploadHold <= 0 ||
		c.mu.draining > 0 || c.mu.closed || c.mu.waitingForRoom > 0 || c.mu.usedBytes > c.opts.LogBytes/2 {
		return 0
	}
	age := time.Since(time.Unix(0, q[0].unixNano))
	if age >= c.opts.UploadHold {
		return 0
	}
	return c.opts.UploadHold - age
}

// applyBatch applies a run of records on one object to the store,
// retrying until it succeeds or ctx is done. It returns the object's new
// content when it uploaded it whole (nil otherwise) and its size in the
// store (-1 when not known).
func (c *Cache) applyBatch(ctx context.Context, b []*rec, imgs *images) ([]byte, int64, error) {
	content, err := c.applyRun(ctx, b, imgs)
	switch {
	case err != nil:
		return nil, -1, err
	case content != nil:
		return content, int64(len(content)), nil
	}
	return nil, runSize(b), nil
}

// runSize is an object's size after a run that starts from a Put or a
// Delete (-1 when the run builds on the store's object).
func runSize(b []*rec) int64 {
	size := int64(-1)
	for _, r := range b {
		switch r.kind {
		case kindPut:
			size = r.data.n
		case kindDelete:
			size = 0
		case kindWriteAt:
			if size >= 0 && r.data.n > 0 {
				size = max(size, r.off+r.data.n)
			}
		}
	}
	return size
}

func (c *Cache) applyRun(ctx context.Context, b []*rec, imgs *images) ([]byte, error) {
	name := b[0].name
	// k: the run's last Put or Delete; what precedes it does not matter.
	k := -1
	for i, r := range b {
		if r.kind != kindWriteAt {
			k = i
		}
	}
	writes := b[k+1:]
	if k >= 0 && b[k].kind == kindDelete && len(writes) == 0 {
		imgs.drop(name)
		return nil, c.retry(ctx, "delete", name, func(ctx context.Context) error {
			return c.inner.Delete(ctx, name)
		})
	}
	if k >= 0 && len(writes) == 0 {
		data := make([]byte, b[k].data.n)
		if err := b[k].data.read(data, 0); err != nil {
			return nil, c.failLocal(err)
		}
		imgs.drop(name)
		err := c.retry(ctx, "put", name, func(ctx context.Context) error {
			return c.inner.Put(ctx, name, data)
		})
		return data, err
	}
	if c.innerOW != nil {
		return nil, c.applyOverwrites(ctx, name, b, k)
	}
	// Rebuild the object: base, then the writes in order.
	var base []byte
	switch {
	case k >= 0 && b[k].kind == kindPut:
		base = make([]byte, b[k].data.n)
		if err := b[k].data.read(base, 0); err != nil {
			return nil, c.failLocal(err)
		}
	case k >= 0: // after a Delete: nothing
	default:
		if err := c.retry(ctx, "fetch", name, func(ctx context.Context) error {
			var err error
			base, err = c.image(ctx, name, imgs)
			return err
		}); err != nil {
			return nil, err
		}
	}
	content, err := applyWrites(base, writes)
	if err != nil {
		return nil, c.failLocal(err)
	}
	if err := c.retry(ctx, "upload", name, func(ctx context.Context) error {
		return c.inner.Put(ctx, name, content)
	}); err != nil {
		return nil, err
	}
	imgs.put(name, content)
	return content, nil
}

// applyWrites returns base with writes applied in order (base may be
// reused).
func applyWrites(base []byte, writes []*rec) ([]byte, error) {
	end := int64(len(base))
	for _, w := range writes {
		if w.data.n > 0 {
			end = max(end, w.off+w.data.n)
		}
	}
	out := base
	if end > int64(cap(base)) {
		out = make([]byte, end, end+end/4)
		copy(out, base)
	} else {
		out = base[:end]
		clear(out[len(base):]) // grown into spare capacity: zeros
	}
	for _, w := range writes {
		if w.data.n == 0 {
			continue // creates the object, extends nothing
		}
		if err := w.data.read(out[w.off:w.off+w.data.n], 0); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// applyOverwrites applies a run to a store that can overwrite in place:
// the base (Put or Delete) first, then the writes, adjacent ones merged.
func (c *Cache) applyOverwrites(ctx context.Context, name string, b []*rec, k int) error {
	if k >= 0 {
		r := b[k]
		var err error
		if r.kind == kindDelete {
			err = c.retry(ctx, "delete", name, func(ctx context.Context) error { return c.inner.Delete(ctx, name) })
		} else {
			data := make([]byte, r.data.n)
			if err := r.data.read(data, 0); err != nil {
				return c.failLocal(err)
			}
			err = c.retry(ctx, "put", name, func(ctx context.Context) error { return c.inner.Put(ctx, name, data) })
		}
		if err != nil {
			return err
		}
	}
	writes := b[k+1:]
	for i := 0; i < len(writes); {
		// Merge a run of writes that continue one another.
		j, end := i+1, writes[i].off+writes[i].data.n
		for j < len(writes) && writes[j].off == end && end-writes[i].off < 64<<20 {
			end += writes[j].data.n
			j++
		}
		buf := make([]byte, end-writes[i].off)
		for _, w := range writes[i:j] {
			if err := w.data.read(buf[w.off-writes[i].off:][:w.data.n], 0); err != nil {
				return c.failLocal(err)
			}
		}
		off := writes[i].off
		if err := c.retry(ctx, "writeat", name, func(ctx context.Context) error {
			return c.innerOW.WriteAt(ctx, name, buf, off)
		}); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// failLocal reports a failure to read the local log: the uploader cannot
// go on (retrying would not help), so it stops at that record and the
// Cache refuses writes; reopening retries.
func (c *Cache) failLocal(err error) error {
	err = fmt.Errorf("%w: reading the log for upload: %w", ErrLogBroken, err)
	c.breakLog(err)
	return err
}

// retry runs op until it succeeds; failures are retried forever with
// jittered exponential backoff (the log holds the data meanwhile), until
// ctx is done.
func (c *Cache) retry(ctx context.Context, what, name string, op func(ctx context.Context) error) error {
	delay := c.opts.RetryMinDelay
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, c.opts.UploadTimeout)
		c.mu.Lock()
		c.mu.attemptStart = time.Now()
		c.mu.Unlock()
		err := op(actx)
		cancel()
		c.mu.Lock()
		c.mu.attemptStart = time.Time{}
		c.mu.Unlock()
		if err == nil {
			c.noteInnerOK()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.stats.uploadFailures.Add(1)
		c.noteInnerFailure(err)
		if attempt == 0 || attempt%100 == 0 {
			c.log.Debug("cache: upload failed; retrying", "op", what, "object", name, "attempt", attempt+1, "err", err)
		}
		d := delay/2 + rand.N(delay/2+1)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-c.retryNow:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		delay = min(2*delay, c.opts.RetryMaxDelay)
	}
}

// image returns the store's current content of name (empty when it does
// not exist), from memory when an earlier batch left it there.
func (c *Cache) image(ctx context.Context, name string, imgs *images) ([]byte, error) {
	if b, ok := imgs.take(name); ok {
		return b, nil
	}
	info, err := c.inner.Stat(ctx, name)
	if errors.Is(err, backend.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if info.Size > MaxObjectBytes {
		return nil, fmt.Errorf("cache: %q has %d bytes: %w", name, info.Size, backend.ErrNoSpace)
	}
	b := make([]byte, info.Size)
	n, err := c.inner.ReadAt(ctx, name, b, 0)
	if err != nil && !(errors.Is(err, io.EOF) && n == len(b)) {
		return nil, err
	}
	c.stats.imageFetches.Add(1)
	return b, nil
}

// finishBatch records an applied batch: the applied mark, the overlay,
// the read cache, the log files it frees.
func (c *Cache) finishBatch(b []*rec, content []byte, size int64) {
	name := b[0].name
	last := b[len(b)-1].seq
	var bytes int64
	for _, r := range b {
		bytes += r.data.n
	}
	// The read cache dropped name's chunks (endChange) before the overlay
	// lets readers fall through to it; the new content goes in.
	if content != nil {
		c.rc.fill(name, content)
	}
	c.mu.Lock()
	c.mu.applied = last
	c.mu.queue = c.mu.queue[len(b):]
	if len(c.mu.queue) == 0 {
		c.mu.queue = nil // let the array go
	}
	c.mu.queuedBytes -= bytes
	c.pruneLocked(name, last, size)
	c.retireAppliedLocked()
	now := time.Now()
	if !c.mu.lastUpload.IsZero() {
		// An exponentially weighted rate with a time constant of ~10 s.
		dt := now.Sub(c.mu.lastUpload).Seconds()
		w := min(1, dt/10)
		if dt > 0 {
			c.mu.uploadRate = (1-w)*c.mu.uploadRate + w*float64(bytes)/max(dt, 1e-3)
		}
	}
	c.mu.lastUpload = now
	c.signalLocked()
	c.mu.Unlock()
	c.stats.uploadedOps.Add(int64(len(b)))
	c.stats.uploadedBytes.Add(bytes)
	c.stats.uploads.Add(1)
	c.persistApplied(last)
}

// images keeps the current content of objects built by WriteAt, bounded
// by bytes, least recently used out first. Only the uploader uses it.
type images struct {
	limit int64
	bytes int64
	lru   *list.List // of *image, most recent in front
	m     map[string]*list.Element
}

type image struct {
	name string
	data []byte
}

func newImages(limit int64) *images {
	return &images{limit: limit, lru: list.New(), m: map[string]*list.Element{}}
}

// take removes and returns the image of name (the caller modifies it).
func (m *images) take(name string) ([]byte, bool) {
	e, ok := m.m[name]
	if !ok {
		return nil, false
	}
	img := e.Value.(*image)
	m.lru.Remove(e)
	delete(m.m, name)
	m.bytes -= int64(cap(img.data))
	return img.data, true
}

func (m *images) drop(name string) { m.take(name) }

// put stores the image of name, evicting old ones beyond the limit.
func (m *images) put(name string, data []byte) {
	m.drop(name)
	if int64(cap(data)) > m.limit {
		return
	}
	m.m[name] = m.lru.PushFront(&image{name: name, data: data})
	m.bytes += int64(cap(data))
	for m.bytes > m.limit {
		e := m.lru.Back()
		img := e.Value.(*image)
		m.lru.Remove(e)
		delete(m.m, img.name)
		m.bytes -= int64(cap(img.data))
	}
}
