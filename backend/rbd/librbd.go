//go:build ceph

package rbd

// The C side of the device: asynchronous librbd I/O whose completions land
// in a queue that one Go goroutine drains, so that no librbd thread ever
// calls into Go and no OS thread is held per request, not even by the
// dispatcher: it sleeps in Go's netpoller on an eventfd, not in C.
//
//	submitter (Go)          librbd threads                 dispatcher (Go)
//	──────────────          ──────────────                 ───────────────
//	lw_submit(slot i) ───►  aio request … done:            lw_poll: empty,
//	wait on slot i          lw_done: ring[tail] = (i, ret)   sleeping = 1
//	                        sleeping? write(eventfd) ─────► read(eventfd)
//	                                                         lw_poll: a batch
//	◄─────────────────────────────────────────────────────── wakes i
//
// A dispatcher blocked in a C call would cost more than the call: the Go
// runtime hands its P to another thread and its monitor thread polls every
// 20 µs while any thread sits in C, two context switches per completion on
// a virtual machine. The eventfd is written only when the dispatcher found
// the ring empty, so a busy device costs no system call per completion.
//
// Each in-flight request owns one slot (0 ≤ i < nslots); the ring holds at
// most one event per slot, so it never overflows. Buffers handed to
// librbd are C memory owned by the slot until its completion, so a request
// the caller stopped waiting for can finish safely.

/*
#cgo LDFLAGS: -lrbd -lrados
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <rados/librados.h>
#include <rbd/librbd.h>

struct lw_queue;

typedef struct lw_slot {
	struct lw_queue *q;
	uint32_t idx;
	uint64_t mismatch;
} lw_slot;

typedef struct lw_event {
	uint32_t slot;
	int64_t ret;
} lw_event;

typedef struct lw_queue {
	pthread_mutex_t mu;
	lw_event *ring;
	uint32_t cap, head, n;
	int closed;
	int sleeping; // the dispatcher found the ring empty and waits on efd
	int efd;      // eventfd (nonblocking) that wakes the dispatcher
	lw_slot *slots;
} lw_queue;

static lw_queue *lw_queue_new(uint32_t nslots) {
	lw_queue *q = calloc(1, sizeof(*q));
	if (q == NULL) {
		return NULL;
	}
	q->ring = calloc(nslots, sizeof(lw_event));
	q->slots = calloc(nslots, sizeof(lw_slot));
	if (q->ring == NULL || q->slots == NULL) {
		free(q->ring);
		free(q->slots);
		free(q);
		return NULL;
	}
	q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (q->efd < 0) {
		free(q->ring);
		free(q->slots);
		free(q);
		return NULL;
	}
	q->cap = nslots;
	for (uint32_t i = 0; i < nslots; i++) {
		q->slots[i].q = q;
		q->slots[i].idx = i;
	}
	pthread_mutex_init(&q->mu, NULL);
	return q;
}

static void lw_queue_free(lw_queue *q) {
	pthread_mutex_destroy(&q->mu);
	free(q->ring);
	free(q->slots);
	free(q);
}

static void lw_wake(lw_queue *q) {
	uint64_t one = 1;
	// Nonblocking: EAGAIN means the counter is already nonzero, so the
	// dispatcher will wake anyway.
	ssize_t r = write(q->efd, &one, sizeof(one));
	(void)r;
}

static void lw_push(lw_queue *q, uint32_t slot, int64_t ret) {
	pthread_mutex_lock(&q->mu);
	q->ring[(q->head + q->n) % q->cap] = (lw_event){slot, ret};
	q->n++;
	int wake = q->sleeping;
	q->sleeping = 0;
	pthread_mutex_unlock(&q->mu);
	if (wake) {
		lw_wake(q);
	}
}

static void lw_done(rbd_completion_t c, void *arg) {
	lw_slot *s = arg;
	int64_t ret = rbd_aio_get_return_value(c);
	rbd_aio_release(c);
	lw_push(s->q, s->idx, ret);
}

// lw_poll copies up to max queued events without blocking and returns
// their number. With none queued it returns 0 and marks the dispatcher as
// sleeping, so that the next lw_push writes the eventfd; or -1 once the
// queue is closed and empty.
static int lw_poll(lw_queue *q, uint32_t *slots, int64_t *rets, int max) {
	pthread_mutex_lock(&q->mu);
	int n = 0;
	while (q->n > 0 && n < max) {
		lw_event e = q->ring[q->head];
		q->head = (q->head + 1) % q->cap;
		q->n--;
		slots[n] = e.slot;
		rets[n] = e.ret;
		n++;
	}
	if (n == 0) {
		if (q->closed) {
			n = -1;
		} else {
			q->sleeping = 1;
		}
	}
	pthread_mutex_unlock(&q->mu);
	return n;
}

static void lw_close(lw_queue *q) {
	pthread_mutex_lock(&q->mu);
	q->closed = 1;
	pthread_mutex_unlock(&q->mu);
	lw_wake(q);
}

enum { LW_READ, LW_WRITE, LW_ZERO, LW_FLUSH, LW_CAW };

// lw_submit starts one asynchronous request on behalf of slot. zflags are
// rbd_write_zeroes' flags.
static int lw_submit(rbd_image_t img, lw_queue *q, uint32_t slot, int kind, uint64_t off,
                     uint64_t len, char *buf, const char *cmp, int zflags) {
	lw_slot *s = &q->slots[slot];
	rbd_completion_t c;
	int r = rbd_aio_create_completion(s, lw_done, &c);
	if (r < 0) {
		return r;
	}
	switch (kind) {
	case LW_READ:
		r = rbd_aio_read2(img, off, len, buf, c, 0);
		break;
	case LW_WRITE:
		r = rbd_aio_write2(img, off, len, buf, c, 0);
		break;
	case LW_ZERO:
		r = rbd_aio_write_zeroes(img, off, len, c, zflags, 0);
		break;
	case LW_FLUSH:
		r = rbd_aio_flush(img, c);
		break;
	case LW_CAW:
		s->mismatch = 0;
		r = (int)rbd_aio_compare_and_write(img, off, len, cmp, buf, c, &s->mismatch, 0);
		break;
	default:
		r = -EINVAL;
	}
	if (r < 0) {
		rbd_aio_release(c);
	}
	return r;
}

// Extents for AllocationStatus, gathered by a C callback so that
// diff_iterate never calls into Go.
typedef struct lw_extents {
	uint64_t *off, *len;
	size_t n, cap, max;
} lw_extents;

static int lw_extent_cb(uint64_t off, size_t len, int exists, void *arg) {
	lw_extents *e = arg;
	if (!exists) {
		return 0;
	}
	if (e->n == e->cap) {
		if (e->cap >= e->max) {
			return -E2BIG;
		}
		size_t cap = e->cap ? 2 * e->cap : 64;
		if (cap > e->max) {
			cap = e->max;
		}
		uint64_t *o = realloc(e->off, cap * sizeof(uint64_t));
		if (o == NULL) {
			return -ENOMEM;
		}
		e->off = o;
		uint64_t *l = realloc(e->len, cap * sizeof(uint64_t));
		if (l == NULL) {
			return -ENOMEM;
		}
		e->len = l;
		e->cap = cap;
	}
	e->off[e->n] = off;
	e->len[e->n] = len;
	e->n++;
	return 0;
}

static int lw_allocated(rbd_image_t img, uint64_t off, uint64_t len, lw_extents *e) {
	return rbd_diff_iterate2(img, NULL, off, len, 1, 0, lw_extent_cb, e);
}

static void lw_extents_free(lw_extents *e) {
	free(e->off);
	free(e->len);
	e->off = e->len = NULL;
	e->n = e->cap = 0;
}

// lw_metadata_get reads a metadata value into a malloc'd string.
static int lw_metadata_get(rbd_image_t img, const char *key, char **out) {
	size_t n = 128;
	for (int tries = 0; tries < 4; tries++) {
		char *v = malloc(n);
		if (v == NULL) {
			return -ENOMEM;
		}
		size_t got = n;
		int r = rbd_metadata_get(img, key, v, &got);
		if (r == 0) {
			*out = v;
			return 0;
		}
		free(v);
		if (r != -ERANGE) {
			return r;
		}
		n = got > n ? got : 2 * n;
	}
	return -ERANGE;
}

static int lw_create(rados_ioctx_t io, const char *name, uint64_t size, uint64_t features, int order) {
	return rbd_create2(io, name, size, features, &order);
}

static int lw_namespace_ensure(rados_ioctx_t io, const char *ns) {
	bool exists = false;
	int r = rbd_namespace_exists(io, ns, &exists);
	if (r < 0) {
		return r;
	}
	if (exists) {
		return 0;
	}
	r = rbd_namespace_create(io, ns);
	return r == -EEXIST ? 0 : r;
}

// lw_lock_owner returns the first owner of the image's lock, if any.
static int lw_lock_owner(rbd_image_t img, char *buf, size_t n) {
	rbd_lock_mode_t mode;
	char *owners[4];
	size_t max = 4;
	int r = rbd_lock_get_owners(img, &mode, owners, &max);
	if (r < 0) {
		return r;
	}
	if (max > 0) {
		strncpy(buf, owners[0], n - 1);
		buf[n - 1] = 0;
	}
	rbd_lock_get_owners_cleanup(owners, max);
	return (int)max;
}
*/
import "C"

import (
	"errors"
	"os"
	"syscall"
	"time"
	"unsafe"

	gorados "github.com/ceph/go-ceph/rados"
)

// Request kinds of lw_submit.
const (
	kindRead  = int(C.LW_READ)
	kindWrite = int(C.LW_WRITE)
	kindZero  = int(C.LW_ZERO)
	kindFlush = int(C.LW_FLUSH)
)

// image is an open librbd image handle. Its methods are thin wrappers
// returning a positive errno (0 for success); concurrency and lifetime
// are the Device's business.
type image struct {
	h C.rbd_image_t
}

func errno(ret C.int) syscall.Errno {
	if ret >= 0 {
		return 0
	}
	return syscall.Errno(-ret)
}

func openImage(io *gorados.IOContext, name string, readOnly bool) (*image, syscall.Errno) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var h C.rbd_image_t
	var r C.int
	if readOnly {
		r = C.rbd_open_read_only(C.rados_ioctx_t(io.Pointer()), cname, &h, nil)
	} else {
		r = C.rbd_open(C.rados_ioctx_t(io.Pointer()), cname, &h, nil)
	}
	if r < 0 {
		return nil, errno(r)
	}
	return &image{h: h}, 0
}

// createImage creates an image of size bytes with the given features and
// object size 1<<order.
func createImage(io *gorados.IOContext, name string, size int64, features uint64, order int) syscall.Errno {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	return errno(C.lw_create(C.rados_ioctx_t(io.Pointer()), cname, C.uint64_t(size), C.uint64_t(features), C.int(order)))
}

// ensureNamespace creates an RBD namespace when missing; io must be on
// the pool's default namespace.
func ensureNamespace(io *gorados.IOContext, ns string) syscall.Errno {
	cns := C.CString(ns)
	defer C.free(unsafe.Pointer(cns))
	return errno(C.lw_namespace_ensure(C.rados_ioctx_t(io.Pointer()), cns))
}

func (im *image) close() syscall.Errno { return errno(C.rbd_close(im.h)) }

func (im *image) size() (int64, syscall.Errno) {
	var n C.uint64_t
	if r := C.rbd_get_size(im.h, &n); r < 0 {
		return 0, errno(r)
	}
	return int64(n), 0
}

func (im *image) objectSize() (int64, syscall.Errno) {
	var info C.rbd_image_info_t
	if r := C.rbd_stat(im.h, &info, C.size_t(unsafe.Sizeof(info))); r < 0 {
		return 0, errno(r)
	}
	return int64(info.obj_size), 0
}

func (im *image) resize(size int64) syscall.Errno {
	return errno(C.rbd_resize2(im.h, C.uint64_t(size), true, nil, nil))
}

func (im *image) flush() syscall.Errno { return errno(C.rbd_flush(im.h)) }

func (im *image) lockAcquire() syscall.Errno {
	return errno(C.rbd_lock_acquire(im.h, C.RBD_LOCK_MODE_EXCLUSIVE))
}

func (im *image) lockRelease() syscall.Errno { return errno(C.rbd_lock_release(im.h)) }

// lockOwner names the client holding the image's exclusive lock, or "".
func (im *image) lockOwner() string {
	var buf [256]C.char
	if r := C.lw_lock_owner(im.h, &buf[0], C.size_t(len(buf))); r <= 0 {
		return ""
	}
	return C.GoString(&buf[0])
}

func (im *image) metadataGet(key string) (string, syscall.Errno) {
	ckey := C.CString(key)
	defer C.free(unsafe.Pointer(ckey))
	var out *C.char
	if r := C.lw_metadata_get(im.h, ckey, &out); r < 0 {
		return "", errno(r)
	}
	defer C.free(unsafe.Pointer(out))
	return C.GoString(out), 0
}

func (im *image) metadataSet(key, value string) syscall.Errno {
	ckey, cval := C.CString(key), C.CString(value)
	defer C.free(unsafe.Pointer(ckey))
	defer C.free(unsafe.Pointer(cval))
	return errno(C.rbd_metadata_set(im.h, ckey, cval))
}

// allocated returns the allocated extents of [off, off+n), at most max of
// them; E2BIG reports that there were more.
func (im *image) allocated(off, n int64, max int) (offs, lens []int64, e syscall.Errno) {
	var ex C.lw_extents
	ex.max = C.size_t(max)
	defer C.lw_extents_free(&ex)
	if r := C.lw_allocated(im.h, C.uint64_t(off), C.uint64_t(n), &ex); r < 0 {
		return nil, nil, errno(r)
	}
	k := int(ex.n)
	if k == 0 {
		return nil, nil, 0
	}
	co := unsafe.Slice(ex.off, k)
	cl := unsafe.Slice(ex.len, k)
	offs, lens = make([]int64, k), make([]int64, k)
	for i := range k {
		offs[i], lens[i] = int64(co[i]), int64(cl[i])
	}
	return offs, lens, 0
}

// queue is the completion queue and the slots' C state.
type queue struct {
	q    *C.lw_queue
	wake *os.File // the queue's eventfd, in Go's netpoller
	buf  [8]byte
}

func newQueue(nslots int) *queue {
	q := C.lw_queue_new(C.uint32_t(nslots))
	if q == nil {
		return nil
	}
	// A nonblocking descriptor becomes pollable: reads park the goroutine
	// in the netpoller instead of holding a thread.
	return &queue{q: q, wake: os.NewFile(uintptr(q.efd), "rbd-completions")}
}

// free releases the queue; the dispatcher must have returned.
func (q *queue) free() {
	q.wake.Close()
	C.lw_queue_free(q.q)
}

// close wakes the dispatcher; wait returns -1 once the queue is empty.
func (q *queue) close() { C.lw_close(q.q) }

// wait blocks for completions: it fills slots and rets and returns how
// many, or -1 after close when nothing is left. Only the dispatcher calls
// it.
func (q *queue) wait(slots []uint32, rets []int64) int {
	for {
		n := int(C.lw_poll(q.q, (*C.uint32_t)(unsafe.Pointer(&slots[0])), (*C.int64_t)(unsafe.Pointer(&rets[0])), C.int(len(slots))))
		if n != 0 {
			return n
		}
		// Empty, and marked sleeping: the next completion (or close)
		// writes the eventfd. Reading resets its counter.
		if _, err := q.wake.Read(q.buf[:]); err != nil && !errors.Is(err, syscall.EAGAIN) {
			// The descriptor cannot fail while the queue lives; if it
			// did, polling still finds every completion.
			time.Sleep(time.Millisecond)
		}
	}
}

// mismatch is the mismatch offset librbd reported for slot's CAW.
func (q *queue) mismatch(slot uint32) uint64 {
	return uint64(unsafe.Slice(q.q.slots, q.q.cap)[slot].mismatch)
}

// submit starts a request for slot. buf and cmp are C memory (or nil).
func (q *queue) submit(im *image, slot uint32, kind int, off, n int64, buf, cmp unsafe.Pointer, zflags int) syscall.Errno {
	return errno(C.lw_submit(im.h, q.q, C.uint32_t(slot), C.int(kind), C.uint64_t(off), C.uint64_t(n),
		(*C.char)(buf), (*C.char)(cmp), C.int(zflags)))
}

// cbuf is C memory for one request's data: n bytes in use of cap.
type cbuf struct {
	p      unsafe.Pointer
	n, cap int
}

// ensure makes b hold n bytes, reusing its memory when it is big enough.
func (b *cbuf) ensure(n int) {
	if n <= b.cap {
		b.n = n
		return
	}
	b.free()
	p := C.malloc(C.size_t(n))
	if p == nil {
		panic("rbd: out of C memory")
	}
	b.p, b.n, b.cap = p, n, n
}

func (b cbuf) bytes() []byte {
	if b.p == nil {
		return nil
	}
	return unsafe.Slice((*byte)(b.p), b.n)
}

func (b *cbuf) free() {
	if b.p != nil {
		C.free(b.p)
		b.p, b.n, b.cap = nil, 0, 0
	}
}

// thickZeroes is rbd_write_zeroes' flag for zeros that stay allocated.
const thickZeroes = int(C.RBD_WRITE_ZEROES_FLAG_THICK_PROVISION)
