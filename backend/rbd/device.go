//go:build ceph

package rbd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	gorados "github.com/ceph/go-ceph/rados"

	"github.com/lunway/lunway/backend/rados"
	"github.com/lunway/lunway/blockdev"
)

// Slot states. A slot is idle in the free list; waiting while a caller
// waits for its request; completed when the dispatcher handed the result
// to the caller; abandoned when the caller stopped waiting (its context
// ended or IOTimeout passed), in which case the dispatcher cleans up.
const (
	slotIdle uint32 = iota
	slotWaiting
	slotCompleted
	slotAbandoned
)

type slot struct {
	// state is the slot state in the low 32 bits and the number of
	// requests the slot has carried in the high 32, so that the watchdog
	// never abandons a request that reused the slot after it looked.
	state atomic.Uint64
	done  chan int64 // the result (or timedOut), for a waiting caller
	buf   cbuf       // the request's data, C memory, kept across requests up to slotBufKeep
	start atomic.Int64

	// The request's asynchronous part (StartReadAt, StartWriteAt): set
	// under mu by the submitter before begin; read by the dispatcher once
	// it completed the request and by the watchdog under mu. A request
	// with a nil cb has a caller waiting on done.
	mu  sync.Mutex
	cb  blockdev.Completion
	ctx context.Context
	out []byte // a read's destination
	off int64
}

// begin marks the slot waiting for a new request.
func (s *slot) begin() {
	s.state.Store((s.state.Load()>>32+1)<<32 | uint64(slotWaiting))
}

// set changes the state of the slot's current request; only its owner
// (the caller or the dispatcher) calls it.
func (s *slot) set(st uint32) {
	s.state.Store(s.state.Load()&^math.MaxUint32 | uint64(st))
}

// cas changes the state of the current request from one to another.
func (s *slot) cas(from, to uint32) bool {
	w := s.state.Load()
	return uint32(w) == from && s.state.CompareAndSwap(w, w&^math.MaxUint32|uint64(to))
}

// slotBufKeep is the largest data buffer a slot keeps for its next
// request: small I/O then costs no malloc and free (two cgo calls), and
// a device holds at most MaxInFlight times this much C memory.
const slotBufKeep = 64 << 10

// timedOut is the result the watchdog hands a caller whose request
// outlived IOTimeout; no librbd result is this negative.
const timedOut = math.MinInt64

// Device is a blockdev.Device on an RBD image. It implements Unmapper,
// ZeroWriter, AllocationStatuser, Resizer, HealthReporter and AsyncIO.
type Device struct {
	opts Options // with defaults
	conn *rados.Conn
	io   *gorados.IOContext
	img  *image
	q    *queue

	slots []slot
	free  chan uint32 // idle slots; also the in-flight bound

	bs         int64
	objectSize int64
	size       atomic.Int64
	locked     bool

	dispatchDone chan struct{}
	pollStop     chan struct{}
	pollDone     chan struct{}
	watchStop    chan struct{}
	watchDone    chan struct{}

	// mu is held shared by every request from admission to completion (or
	// abandonment) and exclusively by Close, so that Close never closes
	// the image under a request being submitted.
	mu struct {
		sync.RWMutex
		closed bool
	}
	// resizeMu orders Resize and the poller's size updates.
	resizeMu sync.Mutex

	// writeGen counts completed writes (and zeroings); flushedGen is the
	// writeGen the last successful flush started at. Flush skips the
	// round trip when they are equal: with the exclusive-lock feature a
	// flush waits for the lock, which a crashed gateway holds until its
	// watch times out.
	writeGen, flushedGen atomic.Uint64

	lastOK, lastFail atomic.Int64 // unix nanoseconds of the last result of each kind
	lastWarn         atomic.Int64
	stats            struct {
		reads, writes, flushes, zeroes, statuses, errors, timeouts atomic.Int64
		readBytes, writeBytes                                      atomic.Int64
	}
}

var (
	_ blockdev.Device             = (*Device)(nil)
	_ blockdev.Unmapper           = (*Device)(nil)
	_ blockdev.ZeroWriter         = (*Device)(nil)
	_ blockdev.AllocationStatuser = (*Device)(nil)
	_ blockdev.Resizer            = (*Device)(nil)
	_ blockdev.HealthReporter     = (*Device)(nil)
	_ blockdev.AsyncIO            = (*Device)(nil)
)

// Open connects to the cluster and opens the image opts names (creating
// it when opts.Create is set and it is missing). The Device owns the
// connection. Errors name what is wrong: they wrap ErrConfig for a
// configuration that cannot work (missing keyring, unknown pool, missing
// image), blockdev.ErrUnavailable when the cluster cannot be reached (a
// retry may succeed), and blockdev.ErrInUse when another client holds the
// exclusive lock opts.ExclusiveLock asks for.
func Open(ctx context.Context, opts *Options) (*Device, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	conn, err := rados.Connect(ctx, &o.ConnOptions)
	if err != nil {
		return nil, err
	}
	d := &Device{opts: o, conn: conn, bs: int64(o.LogicalBlockSize)}
	if err := d.openImage(ctx); err != nil {
		if d.io != nil {
			d.io.Destroy()
		}
		conn.Close()
		return nil, err
	}
	d.q = newQueue(o.MaxInFlight)
	if d.q == nil {
		d.img.close()
		d.io.Destroy()
		conn.Close()
		return nil, errors.New("rbd: cannot allocate the completion queue")
	}
	d.slots = make([]slot, o.MaxInFlight)
	d.free = make(chan uint32, o.MaxInFlight)
	for i := range d.slots {
		d.slots[i].done = make(chan int64, 1)
		d.free <- uint32(i)
	}
	d.dispatchDone = make(chan struct{})
	go d.dispatch()
	d.watchStop, d.watchDone = make(chan struct{}), make(chan struct{})
	go d.watch()
	if o.SizePollInterval > 0 {
		d.pollStop, d.pollDone = make(chan struct{}), make(chan struct{})
		go d.poll()
	}
	o.Logger.Debug("rbd image open", "pool", o.Pool, "namespace", o.Namespace, "image", o.Image,
		"size", d.size.Load(), "object_size", d.objectSize, "exclusive_lock", d.locked)
	return d, nil
}

// imageSpec is pool/[namespace/]image, as the rbd tool spells it.
func (o *Options) imageSpec() string {
	if o.Namespace == "" {
		return o.Pool + "/" + o.Image
	}
	return o.Pool + "/" + o.Namespace + "/" + o.Image
}

func (d *Device) openImage(ctx context.Context) error {
	o := &d.opts
	if o.Create && o.Namespace != "" {
		io0, err := d.conn.OpenIOContext(o.Pool, "")
		if err != nil {
			return err
		}
		e := ensureNamespace(io0, o.Namespace)
		io0.Destroy()
		if e != 0 {
			return d.openError("create namespace "+o.Namespace, e)
		}
	}
	io, err := d.conn.OpenIOContext(o.Pool, o.Namespace)
	if err != nil {
		return err
	}
	d.io = io
	img, e := openImage(io, o.Image, o.ReadOnly)
	if e == syscall.ENOENT && o.Create && !o.ReadOnly {
		features, _ := Features(o.Features)
		order := 0
		for s := o.ObjectSizeBytes; s > 1; s >>= 1 {
			order++
		}
		ce := createImage(io, o.Image, o.SizeBytes, features, order)
		if ce != 0 && ce != syscall.EEXIST {
			return d.openError("create", ce)
		}
		if ce == 0 {
			names := o.Features
			if names == nil {
				names = DefaultFeatures
			}
			o.Logger.Info("rbd image created", "image", o.imageSpec(), "size", o.SizeBytes, "features", names)
		}
		img, e = openImage(io, o.Image, o.ReadOnly)
	}
	if e == syscall.ENOENT {
		return rados.OptionErr("image", "%s does not exist", o.imageSpec())
	}
	if e != 0 {
		return d.openError("open", e)
	}
	d.img = img
	fail := func(err error) error {
		img.close()
		d.img = nil
		return err
	}
	if o.ExclusiveLock && !o.ReadOnly {
		if err := d.lock(ctx); err != nil {
			return fail(err)
		}
	}
	size, e := img.size()
	if e != 0 {
		return fail(d.openError("stat", e))
	}
	d.size.Store(size / d.bs * d.bs)
	if d.objectSize, e = img.objectSize(); e != 0 {
		return fail(d.openError("stat", e))
	}
	return nil
}

// lock takes the exclusive lock, retrying while another client holds it
// until ctx ends: a holder that died releases it once its watch times out
// (osd_client_watch_timeout, 30 s by default).
func (d *Device) lock(ctx context.Context) error {
	for {
		e := d.img.lockAcquire()
		switch {
		case e == 0:
			d.locked = true
			return nil
		case e == syscall.EINVAL || e == syscall.EOPNOTSUPP:
			return rados.OptionErr("exclusive_lock", "image %s lacks the exclusive-lock feature (rbd feature enable %s exclusive-lock)",
				d.opts.imageSpec(), d.opts.imageSpec())
		case e != syscall.EROFS && e != syscall.EBUSY && !rados.Transient(e):
			return d.openError("lock", e)
		}
		select {
		case <-ctx.Done():
			owner := d.img.lockOwner()
			if owner == "" {
				owner = "another client"
			} else {
				owner = "the client at " + owner
			}
			return fmt.Errorf("%w: exclusive_lock: image %s is locked by %s (another gateway serves it)",
				blockdev.ErrInUse, d.opts.imageSpec(), owner)
		case <-time.After(time.Second):
		}
	}
}

func (d *Device) openError(op string, e syscall.Errno) error {
	return fmt.Errorf("rbd: image %s: %w", d.opts.imageSpec(), &Error{Op: op, Errno: e})
}

// Info implements blockdev.Device.
func (d *Device) Info() blockdev.Info {
	return blockdev.Info{
		SizeBytes:         d.size.Load(),
		LogicalBlockSize:  d.opts.LogicalBlockSize,
		PhysicalBlockSize: d.opts.PhysicalBlockSize,
		Thin:              true,
		ReadOnly:          d.opts.ReadOnly,
	}
}

// enter admits a request: it takes mu shared and checks the state and
// the range. The caller must call d.mu.RUnlock when err is nil.
func (d *Device) enter(ctx context.Context, off, n int64, write bool) error {
	d.mu.RLock()
	if d.mu.closed {
		d.mu.RUnlock()
		return blockdev.ErrClosed
	}
	if write && d.opts.ReadOnly {
		d.mu.RUnlock()
		return blockdev.ErrReadOnly
	}
	if err := blockdev.CheckRange(d.Info(), off, n); err != nil {
		d.mu.RUnlock()
		return err
	}
	if err := ctx.Err(); err != nil {
		d.mu.RUnlock()
		return err
	}
	return nil
}

// dispatch delivers completions until the queue is closed and drained.
func (d *Device) dispatch() {
	defer close(d.dispatchDone)
	idx := make([]uint32, 64)
	rets := make([]int64, 64)
	for {
		n := d.q.wait(idx, rets)
		if n < 0 {
			return
		}
		for i := range n {
			s := &d.slots[idx[i]]
			if s.cas(slotWaiting, slotCompleted) {
				if s.cb != nil {
					d.complete(idx[i], rets[i])
				} else {
					s.done <- rets[i]
				}
				continue
			}
			// The caller gave up on it (or the watchdog did, for an
			// asynchronous request: wait until it has read the slot).
			s.mu.Lock()
			s.mu.Unlock() //nolint:staticcheck // an ordering point, not a critical section
			d.noteResult(rets[i])
			d.release(idx[i])
		}
	}
}

func (d *Device) release(i uint32) {
	s := &d.slots[i]
	if s.buf.cap > slotBufKeep {
		s.buf.free()
	}
	s.start.Store(0)
	s.set(slotIdle)
	d.free <- i
}

// watch abandons requests that outlived IOTimeout, on behalf of their
// callers: one ticker for the device instead of a timer per request.
// A request times out between IOTimeout and IOTimeout plus a tick.
func (d *Device) watch() {
	defer close(d.watchDone)
	tick := min(max(d.opts.IOTimeout/10, 10*time.Millisecond), time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-d.watchStop:
			return
		case <-t.C:
		}
		limit := time.Now().Add(-d.opts.IOTimeout).UnixNano()
		for i := range d.slots {
			s := &d.slots[i]
			w := s.state.Load()
			if uint32(w) != slotWaiting {
				continue
			}
			d.expire(s, w, limit)
		}
	}
}

// expire abandons s's request, which was in state w when the watchdog
// looked, if it outlived limit (or, asynchronous, its context ended).
func (d *Device) expire(s *slot, w uint64, limit int64) {
	s.mu.Lock()
	// start is this request's or a later one's; if later, the CAS fails
	// on the count. Under mu, cb and ctx are those of the request the
	// CAS names, if it succeeds.
	cb, ctx := s.cb, s.ctx
	expired := false
	if st := s.start.Load(); st != 0 && st <= limit {
		expired = true
	}
	var err error
	if !expired && cb != nil && ctx != nil {
		err = ctx.Err()
	}
	if !expired && err == nil || !s.state.CompareAndSwap(w, w&^math.MaxUint32|uint64(slotAbandoned)) {
		s.mu.Unlock()
		return
	}
	off, n, op := s.off, int64(s.buf.n), "write"
	if s.out != nil {
		op = "read"
	}
	s.mu.Unlock()
	// The dispatcher recycles the slot when librbd completes.
	if cb == nil {
		s.done <- timedOut // the waiting caller takes this instead
		return
	}
	if expired {
		d.stats.timeouts.Add(1)
		d.lastFail.Store(time.Now().UnixNano())
		err = timeoutError(op, off, n, d.opts.IOTimeout)
	}
	d.mu.RUnlock()
	cb.Done(err)
}

func (d *Device) noteResult(ret int64) {
	now := time.Now().UnixNano()
	if ret >= 0 {
		d.lastOK.Store(now)
	} else if rados.Transient(syscall.Errno(-ret)) {
		d.lastFail.Store(now)
	}
}

// do runs one asynchronous request and waits for it, at most IOTimeout
// (counted from admission, enforced by watch) and as long as ctx lasts.
// data is copied into the request (writes); out receives what a read
// returned.
func (d *Device) do(ctx context.Context, op string, kind int, off, n int64, data, out []byte, zflags int) (int64, error) {
	admitted := time.Now()
	var i uint32
	select {
	case i = <-d.free:
	default:
		// Every slot is busy: wait, within the same bound.
		timer := time.NewTimer(d.opts.IOTimeout)
		select {
		case i = <-d.free:
			timer.Stop()
		case <-ctx.Done():
			timer.Stop()
			return 0, ctx.Err()
		case <-timer.C:
			d.stats.timeouts.Add(1)
			d.lastFail.Store(time.Now().UnixNano())
			return 0, timeoutError(op, off, n, d.opts.IOTimeout)
		}
	}
	s := &d.slots[i]
	switch {
	case data != nil:
		s.buf.ensure(len(data))
		copy(s.buf.bytes(), data)
	case out != nil:
		s.buf.ensure(len(out))
	}
	s.mu.Lock()
	s.cb, s.ctx, s.out, s.off = nil, nil, nil, off
	s.mu.Unlock()
	// The watchdog counts from admission, so a wait for a slot counts.
	s.start.Store(admitted.UnixNano())
	s.begin()
	var p unsafe.Pointer
	if data != nil || out != nil {
		p = s.buf.p
	}
	if e := d.q.submit(d.img, i, kind, off, n, p, nil, zflags); e != 0 {
		d.release(i)
		return 0, d.fail(op, off, n, e)
	}
	var ret int64
	if cancel := ctx.Done(); cancel == nil {
		ret = <-s.done
	} else {
		select {
		case ret = <-s.done:
		case <-cancel:
			if s.cas(slotWaiting, slotAbandoned) {
				return 0, ctx.Err()
			}
			// Completed or timed out meanwhile: take that.
			ret = <-s.done
		}
	}
	if ret == timedOut {
		// The slot is abandoned: the dispatcher recycles it.
		d.stats.timeouts.Add(1)
		d.lastFail.Store(time.Now().UnixNano())
		return 0, timeoutError(op, off, n, d.opts.IOTimeout)
	}
	if ret >= 0 && out != nil {
		copy(out, s.buf.bytes())
	}
	d.release(i)
	d.noteResult(ret)
	if ret < 0 {
		return 0, d.fail(op, off, n, syscall.Errno(-ret))
	}
	return ret, nil
}

func (d *Device) fail(op string, off, n int64, e syscall.Errno) error {
	d.stats.errors.Add(1)
	err := &Error{Op: op, Off: off, Len: n, Errno: e}
	if Sentinel(e) != blockdev.ErrUnavailable {
		// At most one warning a second, however many requests fail.
		now := time.Now().UnixNano()
		if last := d.lastWarn.Load(); now-last >= int64(time.Second) && d.lastWarn.CompareAndSwap(last, now) {
			msg := "rbd request failed"
			if e == syscall.ESHUTDOWN {
				msg = "rbd request failed: this client is blocklisted (another client broke its lock, or an operator fenced it); reopen the LUN"
			}
			d.opts.Logger.Warn(msg, "image", d.opts.imageSpec(), "err", err)
		}
	}
	return err
}

// StartReadAt implements blockdev.AsyncIO: the read is submitted at once
// and completed by the dispatcher, so that no goroutine waits for it.
func (d *Device) StartReadAt(ctx context.Context, p []byte, off int64, done blockdev.Completion) bool {
	return d.start(ctx, kindRead, p, off, done)
}

// StartWriteAt implements blockdev.AsyncIO.
func (d *Device) StartWriteAt(ctx context.Context, p []byte, off int64, done blockdev.Completion) bool {
	return d.start(ctx, kindWrite, p, off, done)
}

// start submits a read or write whose completion goes to done. It refuses
// (returns false) whatever would make the synchronous call wait or fail
// before the request reaches librbd: a closing or closed device, a bad
// range, no idle slot, an ended context.
func (d *Device) start(ctx context.Context, kind int, p []byte, off int64, done blockdev.Completion) bool {
	write := kind == kindWrite
	n := int64(len(p))
	if n == 0 || ctx.Err() != nil || !d.mu.TryRLock() {
		return false
	}
	if d.mu.closed || write && d.opts.ReadOnly || blockdev.CheckRange(d.Info(), off, n) != nil {
		d.mu.RUnlock()
		return false
	}
	var i uint32
	select {
	case i = <-d.free:
	default:
		d.mu.RUnlock()
		return false
	}
	s := &d.slots[i]
	s.buf.ensure(len(p))
	s.mu.Lock()
	s.cb, s.ctx, s.off = done, ctx, off
	if write {
		copy(s.buf.bytes(), p)
		s.out = nil
	} else {
		s.out = p
	}
	s.mu.Unlock()
	s.start.Store(time.Now().UnixNano())
	s.begin()
	if e := d.q.submit(d.img, i, kind, off, n, s.buf.p, nil, 0); e != 0 {
		// Nothing reached the image: the synchronous call retries and
		// reports what fails.
		d.release(i)
		d.mu.RUnlock()
		return false
	}
	if write {
		d.stats.writes.Add(1)
		d.stats.writeBytes.Add(n)
	} else {
		d.stats.reads.Add(1)
		d.stats.readBytes.Add(n)
	}
	return true
}

// complete ends an asynchronous request the dispatcher received ret for.
func (d *Device) complete(i uint32, ret int64) {
	s := &d.slots[i]
	s.mu.Lock() // the watchdog may be looking
	cb, out, off, n := s.cb, s.out, s.off, int64(s.buf.n)
	s.cb, s.ctx, s.out = nil, nil, nil
	s.mu.Unlock()
	if ret >= 0 && out != nil {
		got := copy(out, s.buf.bytes()[:min(int64(ret), n)])
		clear(out[got:]) // reads inside the image are never short; be safe anyway
	}
	d.release(i)
	d.noteResult(ret)
	var err error
	if out == nil {
		d.writeGen.Add(1)
		if ret < 0 {
			err = d.fail("write", off, n, syscall.Errno(-ret))
		}
	} else if ret < 0 {
		err = d.fail("read", off, n, syscall.Errno(-ret))
	}
	d.mu.RUnlock()
	cb.Done(err)
}

// ReadAt implements blockdev.Device.
func (d *Device) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := d.enter(ctx, off, int64(len(p)), false); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	if len(p) == 0 {
		return nil
	}
	d.stats.reads.Add(1)
	d.stats.readBytes.Add(int64(len(p)))
	got, err := d.do(ctx, "read", kindRead, off, int64(len(p)), nil, p, 0)
	if err == nil && got != int64(len(p)) {
		// Reads inside the image are never short; be safe anyway.
		clear(p[got:])
	}
	return err
}

// WriteAt implements blockdev.Device. FUA is a write followed by a flush.
func (d *Device) WriteAt(ctx context.Context, p []byte, off int64, flags blockdev.WriteFlags) error {
	if err := d.enter(ctx, off, int64(len(p)), true); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	if len(p) == 0 {
		return nil
	}
	d.stats.writes.Add(1)
	d.stats.writeBytes.Add(int64(len(p)))
	_, err := d.do(ctx, "write", kindWrite, off, int64(len(p)), p, nil, 0)
	d.writeGen.Add(1)
	if err != nil {
		return err
	}
	if flags&blockdev.FUA != 0 {
		return d.flushLocked(ctx)
	}
	return nil
}

// flushLocked flushes unless no write completed since the last flush.
func (d *Device) flushLocked(ctx context.Context) error {
	g := d.writeGen.Load()
	if g == d.flushedGen.Load() {
		return nil
	}
	d.stats.flushes.Add(1)
	if _, err := d.do(ctx, "flush", kindFlush, 0, 0, nil, nil, 0); err != nil {
		return err
	}
	for {
		f := d.flushedGen.Load()
		if f >= g || d.flushedGen.CompareAndSwap(f, g) {
			return nil
		}
	}
}

// Flush implements blockdev.Device (rbd_aio_flush).
func (d *Device) Flush(ctx context.Context) error {
	if err := d.enter(ctx, 0, 0, false); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	if d.opts.ReadOnly {
		return nil
	}
	return d.flushLocked(ctx)
}

// Unmap implements blockdev.Unmapper with rbd_write_zeroes, which
// deallocates whole objects and zeroes partial ones, so that the range
// reads as zeros afterwards (rbd_discard skips partial extents smaller
// than rbd_discard_granularity_bytes, which would leave old data behind).
func (d *Device) Unmap(ctx context.Context, off, length int64) error {
	return d.zero(ctx, "unmap", off, length, true, 0)
}

// WriteZeroes implements blockdev.ZeroWriter: with unmap the range is
// deallocated where possible (as Unmap), without it zeros are written and
// stay allocated (RBD_WRITE_ZEROES_FLAG_THICK_PROVISION).
func (d *Device) WriteZeroes(ctx context.Context, off, length int64, unmap bool, flags blockdev.WriteFlags) error {
	return d.zero(ctx, "write zeroes", off, length, unmap, flags)
}

func (d *Device) zero(ctx context.Context, op string, off, length int64, unmap bool, flags blockdev.WriteFlags) error {
	if err := d.enter(ctx, off, length, true); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	if length == 0 {
		return nil
	}
	d.stats.zeroes.Add(1)
	zflags := 0
	if !unmap {
		zflags = thickZeroes
	}
	_, err := d.do(ctx, op, kindZero, off, length, nil, nil, zflags)
	d.writeGen.Add(1)
	if err != nil {
		return err
	}
	if flags&blockdev.FUA != 0 {
		return d.flushLocked(ctx)
	}
	return nil
}

// Bounds of one AllocationStatus query.
const (
	maxStatusSpan    = 256 << 20
	maxStatusExtents = 1 << 16
)

// AllocationStatus implements blockdev.AllocationStatuser from RBD's own
// allocation (rbd_diff_iterate2 against no snapshot, whole_object false,
// parent included). A partially allocated block is reported mapped.
// Allocation is known at the granularity the OSDs track: zeroed ranges
// inside an object may still be reported mapped (they read as zeros).
// One call covers at most 256 MiB.
func (d *Device) AllocationStatus(ctx context.Context, off, length int64) ([]blockdev.Extent, error) {
	if err := d.enter(ctx, off, length, false); err != nil {
		return nil, err
	}
	defer d.mu.RUnlock()
	if length == 0 {
		return nil, nil
	}
	d.stats.statuses.Add(1)
	// Take a slot: diff_iterate is a blocking call holding an OS thread.
	select {
	case i := <-d.free:
		defer func() { d.free <- i }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	span := min(length, maxStatusSpan)
	for {
		offs, lens, e := d.img.allocated(off, span, maxStatusExtents)
		if e == syscall.E2BIG && span > d.objectSize {
			span = max(d.objectSize, span/8/d.bs*d.bs)
			continue
		}
		if e != 0 {
			d.noteResult(-int64(e))
			return nil, d.fail("allocation status", off, span, e)
		}
		d.noteResult(0)
		return extents(off, span, d.bs, offs, lens), nil
	}
}

// Resize implements blockdev.Resizer. Shrinking is refused with
// blockdev.ErrInUse while any data lies beyond the new end.
func (d *Device) Resize(ctx context.Context, sizeBytes int64) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	switch {
	case d.mu.closed:
		return blockdev.ErrClosed
	case d.opts.ReadOnly:
		return blockdev.ErrReadOnly
	case sizeBytes < 0 || sizeBytes%d.bs != 0:
		return fmt.Errorf("%w: size %d", blockdev.ErrUnaligned, sizeBytes)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	d.resizeMu.Lock()
	defer d.resizeMu.Unlock()
	cur := d.size.Load()
	if sizeBytes == cur {
		return nil
	}
	if sizeBytes < cur {
		_, lens, e := d.img.allocated(sizeBytes, cur-sizeBytes, 1)
		if e == syscall.E2BIG || e == 0 && len(lens) > 0 {
			return fmt.Errorf("%w: rbd: image %s holds data beyond %d; shrinking would destroy it",
				blockdev.ErrInUse, d.opts.imageSpec(), sizeBytes)
		}
		if e != 0 {
			return d.fail("resize", 0, 0, e)
		}
	}
	if e := d.img.resize(sizeBytes); e != 0 {
		return d.fail("resize", 0, 0, e)
	}
	d.size.Store(sizeBytes)
	d.opts.Logger.Info("rbd image resized", "image", d.opts.imageSpec(), "size", sizeBytes)
	return nil
}

// poll re-reads the image size to notice resizes made elsewhere.
func (d *Device) poll() {
	defer close(d.pollDone)
	t := time.NewTicker(d.opts.SizePollInterval)
	defer t.Stop()
	for {
		select {
		case <-d.pollStop:
			return
		case <-t.C:
		}
		d.mu.RLock()
		if d.mu.closed {
			d.mu.RUnlock()
			return
		}
		d.resizeMu.Lock()
		size, e := d.img.size()
		changed := false
		if e == 0 {
			size = size / d.bs * d.bs
			changed = size != d.size.Load()
			d.size.Store(size)
		}
		d.resizeMu.Unlock()
		d.mu.RUnlock()
		if changed {
			d.opts.Logger.Info("rbd image resized elsewhere", "image", d.opts.imageSpec(), "size", size)
			if d.opts.OnResize != nil {
				d.opts.OnResize(size)
			}
		}
	}
}

// Metadata returns the image-meta value of key (rbd image-meta get);
// ok is false when the key is not set.
func (d *Device) Metadata(ctx context.Context, key string) (value string, ok bool, err error) {
	if err := d.enter(ctx, 0, 0, false); err != nil {
		return "", false, err
	}
	defer d.mu.RUnlock()
	v, e := d.img.metadataGet(key)
	switch e {
	case 0:
		return v, true, nil
	case syscall.ENOENT:
		return "", false, nil
	}
	return "", false, d.fail("metadata get "+key, 0, 0, e)
}

// SetMetadata sets the image-meta value of key (rbd image-meta set).
func (d *Device) SetMetadata(ctx context.Context, key, value string) error {
	if err := d.enter(ctx, 0, 0, true); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	if e := d.img.metadataSet(key, value); e != 0 {
		return d.fail("metadata set "+key, 0, 0, e)
	}
	return nil
}

// Health implements blockdev.HealthReporter: Unavailable when the last
// result was a transient failure (a timeout, a lost connection) and
// nothing has succeeded since, Degraded while a request has waited longer
// than a quarter of IOTimeout, Healthy otherwise.
func (d *Device) Health() blockdev.Health {
	d.mu.RLock()
	closed := d.mu.closed
	d.mu.RUnlock()
	if closed {
		return blockdev.Unavailable
	}
	if d.lastFail.Load() > d.lastOK.Load() {
		return blockdev.Unavailable
	}
	limit := time.Now().Add(-d.opts.IOTimeout / 4).UnixNano()
	for i := range d.slots {
		if st := d.slots[i].start.Load(); st != 0 && st < limit {
			return blockdev.Degraded
		}
	}
	return blockdev.Healthy
}

// Stats is a snapshot of a Device's counters.
type Stats struct {
	Reads, Writes, Flushes, Zeroes, AllocationStatuses int64
	ReadBytes, WriteBytes                              int64
	// Errors counts failed requests, Timeouts those abandoned after
	// IOTimeout.
	Errors, Timeouts int64
	// InFlight is the number of requests in flight, abandoned ones
	// included.
	InFlight int
}

// Stats returns a snapshot of the counters.
func (d *Device) Stats() Stats {
	return Stats{
		Reads: d.stats.reads.Load(), Writes: d.stats.writes.Load(), Flushes: d.stats.flushes.Load(),
		Zeroes: d.stats.zeroes.Load(), AllocationStatuses: d.stats.statuses.Load(),
		ReadBytes: d.stats.readBytes.Load(), WriteBytes: d.stats.writeBytes.Load(),
		Errors: d.stats.errors.Load(), Timeouts: d.stats.timeouts.Load(),
		InFlight: len(d.slots) - len(d.free),
	}
}

// Close implements blockdev.Device: it flushes, releases the exclusive
// lock, closes the image (librbd waits for requests still in flight,
// abandoned ones included) and the connection.
func (d *Device) Close() error {
	d.mu.Lock()
	if d.mu.closed {
		d.mu.Unlock()
		return blockdev.ErrClosed
	}
	d.mu.closed = true
	d.mu.Unlock()
	if d.pollStop != nil {
		close(d.pollStop)
		<-d.pollDone
	}
	// Requests whose callers stopped waiting may still be in flight: give
	// them the time librados gives them before closing the image under
	// them (rbd_close waits for them too).
	deadline := time.Now().Add(d.opts.IOTimeout + 5*time.Second)
	for len(d.free) < cap(d.free) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	var errs []error
	if !d.opts.ReadOnly && d.writeGen.Load() != d.flushedGen.Load() {
		if e := d.img.flush(); e != 0 {
			errs = append(errs, &Error{Op: "flush", Errno: e})
		}
	}
	if d.locked {
		if e := d.img.lockRelease(); e != 0 {
			d.opts.Logger.Warn("rbd: cannot release the exclusive lock", "image", d.opts.imageSpec(), "err", &Error{Op: "unlock", Errno: e})
		}
	}
	if e := d.img.close(); e != 0 {
		errs = append(errs, &Error{Op: "close", Errno: e})
	}
	d.q.close()
	<-d.dispatchDone
	close(d.watchStop)
	<-d.watchDone
	for i := range d.slots {
		d.slots[i].buf.free()
	}
	d.q.free()
	d.io.Destroy()
	if err := d.conn.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("rbd: closing %s: %w", d.opts.imageSpec(), err)
	}
	return nil
}
