package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/blockdev"
)

// Cache is a backend.Store (and backend.Overwriter) in front of a slower
// Store: a durable, order-preserving write-back log on local disk and a
// read cache. See the package documentation.
//
// All methods may be called concurrently. The Cache must be the only
// writer of the inner store's objects it is used for.
type Cache struct {
	inner   backend.Store
	innerOW backend.Overwriter // nil unless inner is one
	opts    Options
	fs      FS
	log     *slog.Logger
	logDir  string

	lock        io.Closer
	appliedFile File
	rc          *readCache

	// appendMu serializes appends, so that log order is seq order; it is
	// also held by a Put that bypasses the log while it waits for the log
	// to drain.
	appendMu sync.Mutex
	hdrBuf   []byte // guarded by appendMu
	sy       syncer

	// ops counts calls in flight; Close waits for them.
	ops sync.WaitGroup

	mu struct {
		sync.Mutex
		closed bool
		broken error // the local log failed

		files     []*logFile // live files, oldest first
		cur       *logFile   // the append target; nil: start a new file
		graveyard []*logFile // retired, waiting for their users
		usedBytes int64      // bytes of live files
		nextSeq   uint64
		written   uint64 // highest seq written (durable: sy.durable)
		applied   uint64 // highest seq applied to the store

		queue       []*rec // records not yet applied, oldest first
		queuedBytes int64
		objs        map[string]*objState

		// epoch advances when a file retires; viewsAt counts open views
		// by the epoch they were opened at.
		epoch   uint64
		viewsAt map[uint64]int

		changed        chan struct{} // closed and replaced on every state change
		waitingForRoom int
		draining       int

		inner        innerState
		attemptStart time.Time       // an upload attempt in flight since
		health       blockdev.Health // as last logged
		uploadRate   float64         // bytes/s, smoothed
		lastUpload   time.Time
		retryKicked  bool
	}
	retryNow chan struct{} // wakes the uploader's backoff

	stats counters

	bg struct {
		ctx    context.Context
		cancel context.CancelFunc
		wg     sync.WaitGroup
	}
}

var (
	_ backend.Store      = (*Cache)(nil)
	_ backend.Overwriter = (*Cache)(nil)
)

// innerState is what the Cache has seen of the store lately.
type innerState struct {
	failing bool
	since   time.Time
	lastErr error
}

// Open opens (or creates) the cache in opts.Dir in front of inner,
// replays its log and resumes uploading what the log holds. inner stays
// the caller's: Close does not close it.
func Open(ctx context.Context, inner backend.Store, opts *Options) (*Cache, error) {
	o := opts.withDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	c := &Cache{inner: inner, opts: o, fs: o.FS, log: o.Logger, logDir: path.Join(o.Dir, logSubdir),
		retryNow: make(chan struct{}, 1)}
	c.innerOW, _ = inner.(backend.Overwriter)
	c.mu.objs = map[string]*objState{}
	c.mu.viewsAt = map[uint64]int{}
	c.mu.changed = make(chan struct{})
	ok := false
	defer func() {
		if !ok {
			c.closeFiles()
		}
	}()
	if err := c.fs.MkdirAll(c.logDir); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	lock, err := c.fs.Lock(path.Join(o.Dir, lockName))
	if err != nil {
		return nil, fmt.Errorf("cache: lock %s: %w", o.Dir, err)
	}
	c.lock = lock
	ap := path.Join(o.Dir, appliedName)
	if c.appliedFile, err = c.fs.Open(ap); err != nil {
		if c.appliedFile, err = c.fs.Create(ap); err != nil {
			return nil, fmt.Errorf("cache: %w", err)
		}
		if err := c.fs.SyncDir(o.Dir); err != nil {
			return nil, fmt.Errorf("cache: %w", err)
		}
	}
	c.mu.applied = readApplied(c.appliedFile)
	c.mu.Lock()
	err = c.replay()
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if c.rc, err = newReadCache(c); err != nil {
		return nil, err
	}
	c.log.Debug("cache: opened", "dir", o.Dir, "pending", len(c.mu.queue), "log_bytes", c.mu.usedBytes)
	c.bg.ctx, c.bg.cancel = context.WithCancel(context.Background())
	c.bg.wg.Add(2)
	go c.uploader(c.bg.ctx)
	go c.monitor(c.bg.ctx)
	ok = true
	return c, nil
}

// closeFiles releases what Open took, on failure or at Close.
func (c *Cache) closeFiles() {
	c.mu.Lock()
	for _, f := range c.mu.files {
		f.f.Close()
	}
	for _, f := range c.mu.graveyard {
		f.f.Close()
	}
	c.mu.files, c.mu.graveyard, c.mu.cur = nil, nil, nil
	c.mu.Unlock()
	if c.rc != nil {
		c.rc.close()
	}
	if c.appliedFile != nil {
		c.appliedFile.Close()
	}
	if c.lock != nil {
		c.lock.Close()
	}
}

// signalLocked wakes everyone waiting for a state change.
func (c *Cache) signalLocked() {
	close(c.mu.changed)
	c.mu.changed = make(chan struct{})
}

// begin admits a call; end must follow.
func (c *Cache) begin(ctx context.Context, op, name string, checkName bool) error {
	if checkName {
		if err := backend.ValidName(name); err != nil {
			return fmt.Errorf("cache: %s: %w", op, err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		return fmt.Errorf("cache: %s %q: %w", op, name, backend.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("cache: %s %q: %w", op, name, err)
	}
	c.ops.Add(1)
	return nil
}

func (c *Cache) end() { c.ops.Done() }

// write logs one mutation and waits until it is durable.
func (c *Cache) write(ctx context.Context, op string, kind recordKind, name string, off int64, data []byte) error {
	c.appendMu.Lock()
	c.mu.Lock()
	closed := c.mu.closed
	c.mu.Unlock()
	if closed {
		c.appendMu.Unlock()
		return fmt.Errorf("cache: %s %q: %w", op, name, backend.ErrClosed)
	}
	seq, err := c.appendRecord(ctx, kind, name, off, data)
	c.appendMu.Unlock()
	if err != nil {
		return fmt.Errorf("cache: %s %q: %w", op, name, err)
	}
	if err := c.waitDurable(ctx, seq); err != nil {
		return fmt.Errorf("cache: %s %q: %w", op, name, err)
	}
	return nil
}

// Put implements backend.Store: data is logged and durable on local disk
// when Put returns; the upload follows in the background, in order.
// Objects too large for the log go to the store directly, after every
// logged record before them.
func (c *Cache) Put(ctx context.Context, name string, data []byte) error {
	if err := c.begin(ctx, "put", name, true); err != nil {
		return err
	}
	defer c.end()
	if int64(len(data)) > MaxObjectBytes {
		return fmt.Errorf("cache: put %q: %d bytes: %w", name, len(data), backend.ErrNoSpace)
	}
	if int64(len(data)) > c.opts.bypassBytes() {
		return c.putDirect(ctx, name, data)
	}
	return c.write(ctx, "put", kindPut, name, 0, data)
}

// putDirect puts an object too large for the log straight to the store,
// once every logged record is applied; appendMu keeps later writes
// behind it.
func (c *Cache) putDirect(ctx context.Context, name string, data []byte) error {
	c.appendMu.Lock()
	defer c.appendMu.Unlock()
	if err := c.drain(ctx); err != nil {
		return fmt.Errorf("cache: put %q: waiting for the log to drain: %w", name, err)
	}
	c.rc.beginChange(name, false)
	defer c.rc.endChange(name, false)
	// Retry an unavailable store as long as a full log would wait.
	wctx, cancel := context.WithTimeout(ctx, c.opts.FullWait)
	defer cancel()
	delay := c.opts.RetryMinDelay
	var err error
	for {
		err = c.inner.Put(wctx, name, data)
		if err == nil || !errors.Is(err, backend.ErrUnavailable) || wctx.Err() != nil {
			break
		}
		c.noteInnerFailure(err)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-wctx.Done():
			t.Stop()
		}
		delay = min(2*delay, c.opts.RetryMaxDelay)
	}
	if err != nil {
		return fmt.Errorf("cache: put %q (%d bytes, past the log): %w", name, len(data), err)
	}
	c.stats.directPuts.Add(1)
	return nil
}

// Delete implements backend.Store: logged and durable when it returns,
// applied to the store in order.
func (c *Cache) Delete(ctx context.Context, name string) error {
	if err := c.begin(ctx, "delete", name, true); err != nil {
		return err
	}
	defer c.end()
	return c.write(ctx, "delete", kindDelete, name, 0, nil)
}

// WriteAt implements backend.Overwriter on top of any store: the write is
// logged and durable when it returns; the store gets the whole object
// rebuilt (or the write itself when the store is an Overwriter). Writes
// larger than a quarter of the log are split into sector-aligned records:
// each 512-byte sector is atomic, as Overwriter promises, but not the whole.
func (c *Cache) WriteAt(ctx context.Context, name string, p []byte, off int64) error {
	if err := c.begin(ctx, "writeat", name, true); err != nil {
		return err
	}
	defer c.end()
	if off < 0 || off > MaxObjectBytes-int64(len(p)) {
		return fmt.Errorf("cache: writeat %q: offset %d: %w", name, off, blockdev.ErrOutOfRange)
	}
	split := c.opts.splitBytes()
	if int64(len(p)) <= split {
		return c.write(ctx, "writeat", kindWriteAt, name, off, p)
	}
	c.appendMu.Lock()
	var last uint64
	for len(p) > 0 {
		n := int64(len(p))
		if n > split {
			n = split - (off+split)%512 // end the piece on a sector boundary
		}
		seq, err := c.appendRecord(ctx, kindWriteAt, name, off, p[:n])
		if err != nil {
			c.appendMu.Unlock()
			return fmt.Errorf("cache: writeat %q: %w", name, err)
		}
		last, off, p = seq, off+n, p[n:]
	}
	c.appendMu.Unlock()
	if err := c.waitDurable(ctx, last); err != nil {
		return fmt.Errorf("cache: writeat %q: %w", name, err)
	}
	return nil
}

// ReadAt implements backend.Store: data still in the log is read from it,
// the rest through the read cache from the store. A read that needs an
// unreachable store waits at most Options.ReadTimeout, then fails with an
// error wrapping backend.ErrUnavailable.
func (c *Cache) ReadAt(ctx context.Context, name string, p []byte, off int64) (int, error) {
	if err := c.begin(ctx, "read", name, true); err != nil {
		return 0, err
	}
	defer c.end()
	if off < 0 {
		return 0, fmt.Errorf("cache: read %q: negative offset %d: %w", name, off, blockdev.ErrOutOfRange)
	}
	c.mu.Lock()
	st := c.mu.objs[name]
	if st == nil {
		c.mu.Unlock()
		return c.rc.read(ctx, name, p, off)
	}
	v := c.openViewLocked(st)
	c.mu.Unlock()
	defer c.closeView(v)
	return c.readView(ctx, name, v, p, off)
}

// Stat implements backend.Store.
func (c *Cache) Stat(ctx context.Context, name string) (backend.ObjectInfo, error) {
	if err := c.begin(ctx, "stat", name, true); err != nil {
		return backend.ObjectInfo{}, err
	}
	defer c.end()
	c.mu.Lock()
	st := c.mu.objs[name]
	if st == nil {
		c.mu.Unlock()
		var info backend.ObjectInfo
		err := c.readInner(ctx, "stat", name, func(ctx context.Context) error {
			var err error
			info, err = c.inner.Stat(ctx, name)
			return err
		})
		return info, err
	}
	v := c.openViewLocked(st)
	c.mu.Unlock()
	defer c.closeView(v)
	if !v.exists() {
		return backend.ObjectInfo{}, fmt.Errorf("cache: stat %q: %w", name, backend.ErrNotFound)
	}
	size, err := c.sizeOf(ctx, name, v, 0, 0)
	if err != nil {
		return backend.ObjectInfo{}, err
	}
	return backend.ObjectInfo{Name: name, Size: size, ModTime: time.Unix(0, v.unixNano)}, nil
}

// List implements backend.Store: the store's listing merged with the
// log's pending changes. The store is listed completely before fn runs
// (with the read timeout), so fn never sees an entry twice.
func (c *Cache) List(ctx context.Context, prefix string, fn func(backend.ObjectInfo) error) error {
	if err := c.begin(ctx, "list", prefix, false); err != nil {
		return err
	}
	defer c.end()
	// The overlay first: an object created before List and uploaded
	// while the store is listed is then in one of the two.
	type pending struct {
		name   string
		exists bool
		inner  bool // size depends on the store's object
		end    int64
		mtime  int64
	}
	var pend []pending
	c.mu.Lock()
	for name, st := range c.mu.objs {
		if strings.HasPrefix(name, prefix) {
			pend = append(pend, pending{name, st.exists(), st.base == baseInner, st.end, st.unixNano})
		}
	}
	c.mu.Unlock()
	slices.SortFunc(pend, func(a, b pending) int { return strings.Compare(a.name, b.name) })

	var listed []backend.ObjectInfo
	err := c.readInner(ctx, "list", prefix, func(ctx context.Context) error {
		listed = listed[:0]
		return c.inner.List(ctx, prefix, func(oi backend.ObjectInfo) error {
			listed = append(listed, oi)
			return nil
		})
	})
	if err != nil {
		return err
	}
	i, j := 0, 0
	for i < len(listed) || j < len(pend) {
		var info backend.ObjectInfo
		switch {
		case j == len(pend) || i < len(listed) && listed[i].Name < pend[j].name:
			info = listed[i]
			i++
		default:
			p := pend[j]
			j++
			var innerInfo *backend.ObjectInfo
			if i < len(listed) && listed[i].Name == p.name {
				innerInfo = &listed[i]
				i++
			}
			if !p.exists {
				continue
			}
			info = backend.ObjectInfo{Name: p.name, Size: p.end, ModTime: time.Unix(0, p.mtime)}
			if p.inner && innerInfo != nil {
				info.Size = max(info.Size, innerInfo.Size)
			}
		}
		if err := fn(info); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("cache: list %q: %w", prefix, err)
		}
	}
	return nil
}

// readInner runs a read-only operation on the store, retrying while the
// store is unavailable, for at most Options.ReadTimeout.
func (c *Cache) readInner(ctx context.Context, op, name string, fn func(ctx context.Context) error) error {
	rctx, cancel := context.WithTimeout(ctx, c.opts.ReadTimeout)
	defer cancel()
	delay := 20 * time.Millisecond
	for {
		err := fn(rctx)
		if err == nil || errors.Is(err, backend.ErrNotFound) || errors.Is(err, io.EOF) {
			c.noteInnerOK()
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("cache: %s %q: %w", op, name, ctx.Err())
		}
		unavailable := errors.Is(err, backend.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)
		if !unavailable {
			return err
		}
		c.noteInnerFailure(err)
		if rctx.Err() != nil {
			c.stats.readTimeouts.Add(1)
			return fmt.Errorf("cache: %s %q: the store did not answer within %v: %w: %w",
				op, name, c.opts.ReadTimeout, backend.ErrUnavailable, err)
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-rctx.Done():
			t.Stop()
		}
		delay = min(2*delay, time.Second)
	}
}

// noteInnerOK records that the store answered.
func (c *Cache) noteInnerOK() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.mu.inner.failing {
		return
	}
	down := time.Since(c.mu.inner.since)
	c.mu.inner = innerState{}
	c.log.Info("cache: store reachable again", "dir", c.opts.Dir, "unavailable_for", down.Round(time.Millisecond),
		"pending_records", len(c.mu.queue), "pending_bytes", c.mu.queuedBytes)
	c.updateHealthLocked()
	// Wake the uploader from its backoff.
	select {
	case c.retryNow <- struct{}{}:
	default:
	}
}

// noteInnerFailure records a failed store operation.
func (c *Cache) noteInnerFailure(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.inner.lastErr = err
	if c.mu.inner.failing {
		return
	}
	c.mu.inner.failing, c.mu.inner.since = true, time.Now()
	c.log.Warn("cache: store failing; writes continue into the local log", "dir", c.opts.Dir, "err", err,
		"log_bytes", c.mu.usedBytes, "log_limit", c.opts.LogBytes)
	c.updateHealthLocked()
}

// Health implements blockdev.HealthReporter for the cache: Healthy while
// the store answers; Degraded while it does not but the log absorbs
// writes (or while writes wait for room); Unavailable when the log is
// full and the store is down, or the local log failed.
func (c *Cache) Health() blockdev.Health {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.healthLocked()
}

func (c *Cache) healthLocked() blockdev.Health {
	failing := c.storeFailingLocked()
	switch {
	case c.mu.broken != nil:
		return blockdev.Unavailable
	case failing && c.mu.waitingForRoom > 0:
		return blockdev.Unavailable
	case failing, c.mu.waitingForRoom > 0:
		return blockdev.Degraded
	}
	return blockdev.Healthy
}

// storeFailingLocked: the last store operation failed, or an upload has
// been in flight for longer than Options.StallTimeout (a store that hangs
// fails nothing for a long time).
func (c *Cache) storeFailingLocked() bool {
	return c.mu.inner.failing || !c.mu.attemptStart.IsZero() && time.Since(c.mu.attemptStart) > c.opts.StallTimeout
}

// monitor re-evaluates health periodically, so that a stalled store is
// noticed (and logged) while nothing else happens.
func (c *Cache) monitor(ctx context.Context) {
	defer c.bg.wg.Done()
	t := time.NewTicker(max(c.opts.StallTimeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		c.updateHealthLocked()
		c.mu.Unlock()
	}
}

// updateHealthLocked logs a change of health, once.
func (c *Cache) updateHealthLocked() {
	h := c.healthLocked()
	if h == c.mu.health {
		return
	}
	prev := c.mu.health
	c.mu.health = h
	lvl := slog.LevelWarn
	if h == blockdev.Healthy {
		lvl = slog.LevelInfo
	}
	c.log.Log(context.Background(), lvl, "cache: health changed", "dir", c.opts.Dir, "from", prev.String(), "to", h.String(),
		"log_bytes", c.mu.usedBytes, "log_limit", c.opts.LogBytes, "pending_records", len(c.mu.queue))
}

// Drain waits until every record logged before the call is applied to
// the store (uploads go at once instead of waiting for more writes).
func (c *Cache) Drain(ctx context.Context) error {
	if err := c.begin(ctx, "drain", "", false); err != nil {
		return err
	}
	defer c.end()
	return c.drain(ctx)
}

func (c *Cache) drain(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	target := c.mu.written
	c.mu.draining++
	c.signalLocked()
	defer func() { c.mu.draining-- }()
	for c.mu.applied < target {
		if c.mu.broken != nil && c.sy.durable.Load() < target {
			return c.mu.broken
		}
		ch := c.mu.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			c.mu.Lock()
			return ctx.Err()
		}
		c.mu.Lock()
	}
	return nil
}

// Close implements backend.Store. It waits up to Options.CloseDrain for
// pending uploads; what is left stays in the log for the next Open. The
// inner store is not closed.
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return fmt.Errorf("cache: close: %w", backend.ErrClosed)
	}
	c.mu.Unlock()
	if c.opts.CloseDrain > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.CloseDrain)
		if err := c.drain(ctx); err != nil {
			c.log.Warn("cache: closing with uploads pending; they resume at the next open", "dir", c.opts.Dir, "err", err)
		}
		cancel()
	}
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return fmt.Errorf("cache: close: %w", backend.ErrClosed)
	}
	c.mu.closed = true
	c.signalLocked()
	c.mu.Unlock()
	c.ops.Wait()
	c.bg.cancel()
	c.bg.wg.Wait()
	c.mu.Lock()
	applied := c.mu.applied
	pending := len(c.mu.queue)
	c.mu.Unlock()
	c.persistApplied(applied)
	if pending > 0 {
		c.log.Info("cache: closed with uploads pending", "dir", c.opts.Dir, "records", pending)
	}
	c.closeFiles()
	return nil
}
