package blockdevtest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lunway/lunway/blockdev"
)

// Caps is a set of optional Device capabilities.
type Caps uint16

// The optional capabilities of blockdev.
const (
	CapUnmap Caps = 1 << iota
	CapWriteZeroes
	CapAllocationStatus
	CapResize
	CapCompareAndWrite
	CapCopyRange
	CapHealth
	CapAsyncIO
)

var capNames = []string{"Unmap", "WriteZeroes", "AllocationStatus", "Resize", "CompareAndWrite", "CopyRange", "Health", "AsyncIO"}

func (c Caps) String() string {
	var parts []string
	for i, n := range capNames {
		if c&(1<<i) != 0 {
			parts = append(parts, n)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "|")
}

// Capabilities reports which optional interfaces d implements.
func Capabilities(d blockdev.Device) Caps {
	var c Caps
	if _, ok := d.(blockdev.Unmapper); ok {
		c |= CapUnmap
	}
	if _, ok := d.(blockdev.ZeroWriter); ok {
		c |= CapWriteZeroes
	}
	if _, ok := d.(blockdev.AllocationStatuser); ok {
		c |= CapAllocationStatus
	}
	if _, ok := d.(blockdev.Resizer); ok {
		c |= CapResize
	}
	if _, ok := d.(blockdev.CompareAndWriter); ok {
		c |= CapCompareAndWrite
	}
	if _, ok := d.(blockdev.CopyRanger); ok {
		c |= CapCopyRange
	}
	if _, ok := d.(blockdev.HealthReporter); ok {
		c |= CapHealth
	}
	if _, ok := d.(blockdev.AsyncIO); ok {
		c |= CapAsyncIO
	}
	return c
}

// Options tune Run. The zero value (or nil) runs the core suite.
type Options struct {
	// SizeBytes is the size of the devices the suite opens, a multiple of
	// 64 KiB of at least 1 MiB; zero means 4 MiB.
	SizeBytes int64

	// Reopen, when set, enables the durability check: it must make d go
	// away (Close it, or abandon it to simulate a crash) and return a new
	// Device over the same storage. Writes made durable by FUA or Flush
	// must survive; others may, block by block.
	Reopen func(t *testing.T, d blockdev.Device) blockdev.Device

	// OpenReadOnly, when set, enables the read-only check: it returns a
	// read-only Device of sizeBytes, with any contents.
	OpenReadOnly func(t *testing.T, sizeBytes int64) blockdev.Device

	// ExactCaps makes the suite check that the devices implement exactly
	// Caps, so that a decorator does not claim a capability its inner
	// Device lacks.
	ExactCaps bool
	Caps      Caps
}

// Run runs the conformance suite against devices made by open.
func Run(t *testing.T, open func(t *testing.T, sizeBytes int64) blockdev.Device, opts *Options) {
	t.Helper()
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.SizeBytes == 0 {
		o.SizeBytes = 4 << 20
	}
	if o.SizeBytes < 1<<20 || o.SizeBytes%(64<<10) != 0 {
		t.Fatalf("blockdevtest: SizeBytes %d is not a multiple of 64 KiB of at least 1 MiB", o.SizeBytes)
	}
	mk := func(t *testing.T) *env {
		t.Helper()
		d := open(t, o.SizeBytes)
		if d == nil {
			t.Fatal("open returned nil")
		}
		e := newEnv(t, d)
		t.Cleanup(func() { e.close() })
		return e
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, e *env, o *Options)
	}{
		{"Info", testInfo},
		{"Zeros", testZeros},
		{"RoundTrip", testRoundTrip},
		{"RangeErrors", testRangeErrors},
		{"ZeroLength", testZeroLength},
		{"Context", testContext},
		{"FlushFUA", testFlushFUA},
		{"Close", testClose},
		{"Unmap", testUnmap},
		{"WriteZeroes", testWriteZeroes},
		{"AllocationStatus", testAllocationStatus},
		{"Resize", testResize},
		{"CompareAndWrite", testCompareAndWrite},
		{"CompareAndWriteAtomic", testCompareAndWriteAtomic},
		{"CopyRange", testCopyRange},
		{"ConcurrentDisjoint", testConcurrentDisjoint},
		{"ConcurrentOverlapping", testConcurrentOverlapping},
		{"AsyncIO", testAsyncIO},
		{"Model", testModel},
		{"Durability", testDurability},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, mk(t), &o) })
	}
	t.Run("ReadOnly", func(t *testing.T) {
		if o.OpenReadOnly == nil {
			t.Skip("no Options.OpenReadOnly")
		}
		testReadOnly(t, o.OpenReadOnly(t, o.SizeBytes))
	})
}

// env is a device under test with a byte-array model of its contents.
type env struct {
	t     *testing.T
	d     blockdev.Device
	info  blockdev.Info
	bs    int64 // logical block size
	pbs   int64 // physical block size
	model []byte
}

func newEnv(t *testing.T, d blockdev.Device) *env {
	info := d.Info()
	e := &env{t: t, d: d, info: info, bs: int64(info.LogicalBlockSize), pbs: int64(info.PhysicalBlockSize)}
	if e.bs <= 0 || info.SizeBytes < 0 {
		t.Fatalf("Info() = %+v: bad geometry", info)
	}
	e.model = make([]byte, info.SizeBytes)
	return e
}

func (e *env) close() {
	if err := e.d.Close(); err != nil && !errors.Is(err, blockdev.ErrClosed) {
		e.t.Errorf("Close: %v", err)
	}
}

// pattern returns n bytes that depend on seed and position, with no zero
// logical block (so that written data is told apart from zeros).
func pattern(seed uint64, n int) []byte {
	b := make([]byte, (n+7)/8*8)
	x := seed*0x9e3779b97f4a7c15 + 0x632be59bd9b4e019
	for i := 0; i < len(b); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(b[i:], x)
	}
	for i := 0; i < n; i += 512 {
		b[i] |= 1
	}
	return b[:n:n]
}

func (e *env) write(off int64, p []byte, flags blockdev.WriteFlags) {
	e.t.Helper()
	if err := e.d.WriteAt(e.t.Context(), p, off, flags); err != nil {
		e.t.Fatalf("WriteAt(off=%d, len=%d): %v", off, len(p), err)
	}
	copy(e.model[off:], p)
}

// check reads [off, off+n) and compares it with the model.
func (e *env) check(off, n int64) {
	e.t.Helper()
	p := make([]byte, n)
	if err := e.d.ReadAt(e.t.Context(), p, off); err != nil {
		e.t.Fatalf("ReadAt(off=%d, len=%d): %v", off, n, err)
	}
	if i := firstDiff(p, e.model[off:off+n]); i >= 0 {
		e.t.Fatalf("ReadAt(off=%d, len=%d): byte %d (device offset %d, block %d) is %#02x, want %#02x",
			off, n, i, off+i, (off+i)/e.bs, p[i], e.model[off+i])
	}
}

// checkAll compares the whole device with the model.
func (e *env) checkAll() {
	e.t.Helper()
	const chunk = 256 << 10
	for off := int64(0); off < int64(len(e.model)); off += chunk {
		e.check(off, min(chunk, int64(len(e.model))-off))
	}
}

func firstDiff(a, b []byte) int64 {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return int64(i)
		}
	}
	return int64(len(a))
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func testInfo(t *testing.T, e *env, o *Options) {
	info := e.info
	if info.SizeBytes != o.SizeBytes {
		t.Errorf("SizeBytes = %d, want %d", info.SizeBytes, o.SizeBytes)
	}
	if info.LogicalBlockSize != 512 && info.LogicalBlockSize != 4096 {
		t.Errorf("LogicalBlockSize = %d, want 512 or 4096", info.LogicalBlockSize)
	}
	pbs, lbs := info.PhysicalBlockSize, info.LogicalBlockSize
	if pbs < lbs || pbs%lbs != 0 || (pbs/lbs)&(pbs/lbs-1) != 0 {
		t.Errorf("PhysicalBlockSize = %d: not a power-of-two multiple of %d", pbs, lbs)
	}
	if info.Blocks() != info.SizeBytes/int64(lbs) {
		t.Errorf("Blocks() = %d", info.Blocks())
	}
	if info.ReadOnly {
		t.Errorf("open returned a read-only device")
	}
	caps := Capabilities(e.d)
	if info.Thin && caps&(CapUnmap|CapAllocationStatus) != CapUnmap|CapAllocationStatus {
		t.Errorf("Info().Thin but capabilities are %v (Thin needs Unmap and AllocationStatus)", caps)
	}
	if o.ExactCaps && caps != o.Caps {
		t.Errorf("capabilities %v, want exactly %v", caps, o.Caps)
	}
	if e.d.Info() != info {
		t.Errorf("Info() changed without a resize: %+v then %+v", info, e.d.Info())
	}
}

func testZeros(t *testing.T, e *env, o *Options) {
	e.checkAll()
}

func testRoundTrip(t *testing.T, e *env, o *Options) {
	bs, pbs, size := e.bs, e.pbs, e.info.SizeBytes
	offsets := []int64{0, bs, 3 * bs, pbs - bs, pbs, 64<<10 - bs, 1<<20 + 5*bs, size/2 + bs}
	lengths := []int64{bs, 2 * bs, 7 * bs, pbs, pbs + bs, 128<<10 + bs}
	seed := uint64(1)
	for _, off := range offsets {
		for _, n := range lengths {
			if off+n > size {
				continue
			}
			seed++
			e.write(off, pattern(seed, int(n)), 0)
			e.check(off, n)
			// The blocks around the write are untouched.
			lo, hi := max(0, off-pbs), min(size, off+n+pbs)
			e.check(lo, hi-lo)
		}
	}
	// The last block and a write that ends exactly at the end.
	e.write(size-bs, pattern(99, int(bs)), 0)
	e.write(size-3*pbs, pattern(98, int(3*pbs)), 0)
	e.checkAll()
}

// rangeCases are requests that must fail before touching anything.
func rangeCases(bs, size int64) []struct {
	off, n int64
	want   []error // any of these
} {
	unaligned := []error{blockdev.ErrUnaligned}
	beyond := []error{blockdev.ErrOutOfRange}
	either := []error{blockdev.ErrUnaligned, blockdev.ErrOutOfRange}
	maxAligned := math.MaxInt64 / bs * bs
	return []struct {
		off, n int64
		want   []error
	}{
		{1, bs, unaligned},
		{bs / 2, bs, unaligned},
		{0, 1, unaligned},
		{bs, bs + 1, unaligned},
		{bs, bs - 1, unaligned},
		{-bs, bs, either},
		{size, bs, beyond},
		{size - bs, 2 * bs, beyond},
		{size + bs, 0, beyond},
		{size + bs, bs, beyond},
		{maxAligned, bs, beyond},
		{bs, maxAligned, beyond},
	}
}

func isAny(err error, targets []error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

func testRangeErrors(t *testing.T, e *env, o *Options) {
	ctx := t.Context()
	// Fill the device so that "nothing touched" is visible.
	e.write(0, pattern(7, int(e.info.SizeBytes)), 0)
	bs, size := e.bs, e.info.SizeBytes
	for _, c := range rangeCases(bs, size) {
		n := int(min(c.n, 1<<20)) // buffers stay small; lengths beyond are checked by the capabilities
		if c.n < 0 || int64(n) != c.n {
			n = -1
		}
		desc := fmt.Sprintf("off=%d len=%d", c.off, c.n)
		if n >= 0 {
			if err := e.d.ReadAt(ctx, make([]byte, n), c.off); !isAny(err, c.want) {
				t.Errorf("ReadAt(%s) = %v; want %v", desc, err, c.want)
			}
			if err := e.d.WriteAt(ctx, bytes.Repeat([]byte{0xaa}, n), c.off, 0); !isAny(err, c.want) {
				t.Errorf("WriteAt(%s) = %v; want %v", desc, err, c.want)
			}
			if cw, ok := e.d.(blockdev.CompareAndWriter); ok && n > 0 {
				if err := cw.CompareAndWrite(ctx, make([]byte, n), bytes.Repeat([]byte{0xaa}, n), c.off, 0); !isAny(err, c.want) {
					t.Errorf("CompareAndWrite(%s) = %v; want %v", desc, err, c.want)
				}
			}
		}
		if u, ok := e.d.(blockdev.Unmapper); ok {
			if err := u.Unmap(ctx, c.off, c.n); !isAny(err, c.want) {
				t.Errorf("Unmap(%s) = %v; want %v", desc, err, c.want)
			}
		}
		if z, ok := e.d.(blockdev.ZeroWriter); ok {
			for _, unmap := range []bool{false, true} {
				if err := z.WriteZeroes(ctx, c.off, c.n, unmap, 0); !isAny(err, c.want) {
					t.Errorf("WriteZeroes(%s, unmap=%v) = %v; want %v", desc, unmap, err, c.want)
				}
			}
		}
		if a, ok := e.d.(blockdev.AllocationStatuser); ok && c.n > 0 {
			if _, err := a.AllocationStatus(ctx, c.off, c.n); !isAny(err, c.want) {
				t.Errorf("AllocationStatus(%s) = %v; want %v", desc, err, c.want)
			}
		}
		if cr, ok := e.d.(blockdev.CopyRanger); ok && c.n > 0 {
			// As destination and as source.
			if err := cr.CopyRange(ctx, e.d, 0, c.off, c.n); !isAny(err, c.want) {
				t.Errorf("CopyRange(dst %s) = %v; want %v", desc, err, c.want)
			}
			if err := cr.CopyRange(ctx, e.d, c.off, 0, c.n); !isAny(err, c.want) {
				t.Errorf("CopyRange(src %s) = %v; want %v", desc, err, c.want)
			}
		}
	}
	if cw, ok := e.d.(blockdev.CompareAndWriter); ok {
		// compare and data of different lengths.
		if err := cw.CompareAndWrite(ctx, make([]byte, bs), make([]byte, 2*bs), 0, 0); err == nil {
			t.Errorf("CompareAndWrite with len(compare) != len(data) succeeded")
		}
	}
	e.checkAll()
}

func testZeroLength(t *testing.T, e *env, o *Options) {
	ctx := t.Context()
	for _, off := range []int64{0, e.bs, e.info.SizeBytes} {
		if err := e.d.ReadAt(ctx, nil, off); err != nil {
			t.Errorf("ReadAt(len 0, off %d) = %v", off, err)
		}
		if err := e.d.WriteAt(ctx, nil, off, 0); err != nil {
			t.Errorf("WriteAt(len 0, off %d) = %v", off, err)
		}
		if u, ok := e.d.(blockdev.Unmapper); ok {
			if err := u.Unmap(ctx, off, 0); err != nil {
				t.Errorf("Unmap(len 0, off %d) = %v", off, err)
			}
		}
		if z, ok := e.d.(blockdev.ZeroWriter); ok {
			if err := z.WriteZeroes(ctx, off, 0, true, 0); err != nil {
				t.Errorf("WriteZeroes(len 0, off %d) = %v", off, err)
			}
		}
	}
	e.checkAll()
}

func testContext(t *testing.T, e *env, o *Options) {
	e.write(0, pattern(3, 64<<10), 0)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	bs := e.bs
	newData := pattern(4, int(8*bs))
	errs := map[string]error{
		"ReadAt":  e.d.ReadAt(ctx, make([]byte, bs), 0),
		"WriteAt": e.d.WriteAt(ctx, newData, 0, 0),
		"Flush":   e.d.Flush(ctx),
	}
	if u, ok := e.d.(blockdev.Unmapper); ok {
		errs["Unmap"] = u.Unmap(ctx, 8*bs, bs)
	}
	if z, ok := e.d.(blockdev.ZeroWriter); ok {
		errs["WriteZeroes"] = z.WriteZeroes(ctx, 16*bs, bs, false, 0)
	}
	if a, ok := e.d.(blockdev.AllocationStatuser); ok {
		_, errs["AllocationStatus"] = a.AllocationStatus(ctx, 0, bs)
	}
	if cw, ok := e.d.(blockdev.CompareAndWriter); ok {
		errs["CompareAndWrite"] = cw.CompareAndWrite(ctx, e.model[24*bs:25*bs], make([]byte, bs), 24*bs, 0)
	}
	for op, err := range errs {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context = %v; want context.Canceled", op, err)
		}
	}
	// Whatever happened, happened block by block.
	p := make([]byte, 64<<10)
	if err := e.d.ReadAt(t.Context(), p, 0); err != nil {
		t.Fatal(err)
	}
	for b := int64(0); b < int64(len(p))/bs; b++ {
		got, old := p[b*bs:(b+1)*bs], e.model[b*bs:(b+1)*bs]
		ok := bytes.Equal(got, old) ||
			b < 8 && bytes.Equal(got, newData[b*bs:(b+1)*bs]) ||
			(b == 8 || b == 16 || b == 24) && isZero(got)
		if !ok {
			t.Errorf("block %d changed by a canceled call into something else", b)
		}
	}
}

func testFlushFUA(t *testing.T, e *env, o *Options) {
	e.write(0, pattern(5, int(4*e.bs)), blockdev.FUA)
	if err := e.d.Flush(t.Context()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	e.write(e.pbs, pattern(6, int(e.pbs)), 0)
	if err := e.d.Flush(t.Context()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if err := e.d.Flush(t.Context()); err != nil {
		t.Fatalf("second Flush: %v", err)
	}
	e.checkAll()
}

func testClose(t *testing.T, e *env, o *Options) {
	e.write(0, pattern(8, int(e.bs)), 0)
	if err := e.d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx, bs := t.Context(), e.bs
	errs := map[string]error{
		"ReadAt":  e.d.ReadAt(ctx, make([]byte, bs), 0),
		"WriteAt": e.d.WriteAt(ctx, make([]byte, bs), 0, 0),
		"Flush":   e.d.Flush(ctx),
		"Close":   e.d.Close(),
	}
	if u, ok := e.d.(blockdev.Unmapper); ok {
		errs["Unmap"] = u.Unmap(ctx, 0, bs)
	}
	if z, ok := e.d.(blockdev.ZeroWriter); ok {
		errs["WriteZeroes"] = z.WriteZeroes(ctx, 0, bs, true, 0)
	}
	if a, ok := e.d.(blockdev.AllocationStatuser); ok {
		_, errs["AllocationStatus"] = a.AllocationStatus(ctx, 0, bs)
	}
	if r, ok := e.d.(blockdev.Resizer); ok {
		errs["Resize"] = r.Resize(ctx, 2*e.info.SizeBytes)
	}
	if cw, ok := e.d.(blockdev.CompareAndWriter); ok {
		errs["CompareAndWrite"] = cw.CompareAndWrite(ctx, make([]byte, bs), make([]byte, bs), 0, 0)
	}
	if cr, ok := e.d.(blockdev.CopyRanger); ok {
		errs["CopyRange"] = cr.CopyRange(ctx, e.d, 0, bs, bs)
	}
	for op, err := range errs {
		if !errors.Is(err, blockdev.ErrClosed) {
			t.Errorf("%s after Close = %v; want ErrClosed", op, err)
		}
	}
	if a, ok := e.d.(blockdev.AsyncIO); ok {
		var c asyncDone
		if a.StartReadAt(ctx, make([]byte, bs), 0, &c) || a.StartWriteAt(ctx, make([]byte, bs), 0, &c) {
			t.Errorf("AsyncIO started a request after Close")
		}
	}
}

// zeroRanges are ranges for Unmap and WriteZeroes: single blocks, ranges
// straddling physical blocks and 64 KiB boundaries, and large ones.
func (e *env) zeroRanges() [][2]int64 {
	bs, pbs := e.bs, e.pbs
	return [][2]int64{
		{bs, bs},
		{pbs - bs, 2 * bs},
		{pbs, pbs},
		{3 * pbs, 5 * pbs},
		{64<<10 - bs, 3 * bs},
		{128 << 10, 64 << 10},
		{256<<10 + bs, 300<<10 + 3*bs},
	}
}

func testUnmap(t *testing.T, e *env, o *Options) {
	u, ok := e.d.(blockdev.Unmapper)
	if !ok {
		t.Skip("device does not implement Unmapper")
	}
	ctx := t.Context()
	e.write(0, pattern(9, 1<<20), 0) // SizeBytes is at least 1 MiB
	for _, r := range e.zeroRanges() {
		if err := u.Unmap(ctx, r[0], r[1]); err != nil {
			t.Fatalf("Unmap(%d, %d): %v", r[0], r[1], err)
		}
		clear(e.model[r[0] : r[0]+r[1]])
		e.check(max(0, r[0]-e.pbs), min(e.info.SizeBytes, r[0]+r[1]+e.pbs)-max(0, r[0]-e.pbs))
	}
	e.checkAll()
	// Unmapped blocks can be written again.
	e.write(e.bs, pattern(10, int(e.bs)), 0)
	e.check(0, 4*e.pbs)
	if err := u.Unmap(ctx, 0, e.info.SizeBytes); err != nil {
		t.Fatalf("Unmap(whole device): %v", err)
	}
	clear(e.model)
	e.checkAll()
}

func testWriteZeroes(t *testing.T, e *env, o *Options) {
	z, ok := e.d.(blockdev.ZeroWriter)
	if !ok {
		t.Skip("device does not implement ZeroWriter")
	}
	ctx := t.Context()
	e.write(0, pattern(11, 1<<20), 0)
	for i, r := range e.zeroRanges() {
		unmap := i%2 == 1
		flags := blockdev.WriteFlags(0)
		if i%3 == 0 {
			flags = blockdev.FUA
		}
		if err := z.WriteZeroes(ctx, r[0], r[1], unmap, flags); err != nil {
			t.Fatalf("WriteZeroes(%d, %d, unmap=%v): %v", r[0], r[1], unmap, err)
		}
		clear(e.model[r[0] : r[0]+r[1]])
		e.checkAll()
	}
}

// status covers [off, off+n) with AllocationStatus, calling it again where
// it stopped early, and checks the extents' shape.
func (e *env) status(a blockdev.AllocationStatuser, off, n int64) []blockdev.Extent {
	e.t.Helper()
	var all []blockdev.Extent
	for pos, end := off, off+n; pos < end; {
		exts, err := a.AllocationStatus(e.t.Context(), pos, end-pos)
		if err != nil {
			e.t.Fatalf("AllocationStatus(%d, %d): %v", pos, end-pos, err)
		}
		if len(exts) == 0 {
			e.t.Fatalf("AllocationStatus(%d, %d) returned no extent", pos, end-pos)
		}
		for _, x := range exts {
			if x.Off != pos || x.Len <= 0 || x.Len%e.bs != 0 || x.Off+x.Len > end {
				e.t.Fatalf("AllocationStatus(%d, %d): extent %+v does not continue at %d within the range (extents %+v)",
					pos, end-pos, x, pos, exts)
			}
			if x.State != blockdev.Mapped && x.State != blockdev.Deallocated && x.State != blockdev.Anchored {
				e.t.Fatalf("AllocationStatus: extent %+v has unknown state", x)
			}
			pos += x.Len
			all = append(all, x)
		}
	}
	return all
}

// checkStatus checks provisioning against the model: blocks in written
// (whose latest write held nonzero data) are mapped, and blocks reported
// deallocated or anchored read as zeros.
func (e *env) checkStatus(a blockdev.AllocationStatuser, off, n int64, written map[int64]bool) {
	e.t.Helper()
	for _, x := range e.status(a, off, n) {
		for b := x.Off / e.bs; b < (x.Off+x.Len)/e.bs; b++ {
			if x.State != blockdev.Mapped {
				if written[b] {
					e.t.Fatalf("block %d was written but is reported %v", b, x.State)
				}
				if !isZero(e.model[b*e.bs : (b+1)*e.bs]) {
					e.t.Fatalf("block %d is reported %v but holds data", b, x.State)
				}
			}
		}
	}
}

func testAllocationStatus(t *testing.T, e *env, o *Options) {
	a, ok := e.d.(blockdev.AllocationStatuser)
	if !ok {
		t.Skip("device does not implement AllocationStatuser")
	}
	bs, size := e.bs, e.info.SizeBytes
	written := map[int64]bool{}
	ranges := [][2]int64{{0, size}, {0, bs}, {bs, 3 * bs}, {size - bs, bs}, {60 << 10, 200 << 10}, {size / 4, size/2 + bs}}
	for _, r := range ranges {
		e.checkStatus(a, r[0], r[1], written)
	}
	for i, w := range [][2]int64{{bs, bs}, {10 * bs, 30 * bs}, {100 << 10, 200 << 10}, {size - 2*bs, 2 * bs}} {
		e.write(w[0], pattern(uint64(20+i), int(w[1])), 0)
		for b := w[0] / bs; b < (w[0]+w[1])/bs; b++ {
			written[b] = true
		}
	}
	for _, r := range ranges {
		e.checkStatus(a, r[0], r[1], written)
	}
	if u, ok := e.d.(blockdev.Unmapper); ok {
		if err := u.Unmap(t.Context(), 100<<10, 100<<10); err != nil {
			t.Fatal(err)
		}
		clear(e.model[100<<10 : 200<<10])
		for b := int64(100<<10) / bs; b < (200<<10)/bs; b++ {
			delete(written, b)
		}
		for _, r := range ranges {
			e.checkStatus(a, r[0], r[1], written)
		}
	}
}

func testResize(t *testing.T, e *env, o *Options) {
	r, ok := e.d.(blockdev.Resizer)
	if !ok {
		t.Skip("device does not implement Resizer")
	}
	ctx := t.Context()
	size, bs := e.info.SizeBytes, e.bs
	e.write(0, pattern(30, int(size)), 0)
	resize := func(n int64) error {
		t.Helper()
		err := r.Resize(ctx, n)
		if err == nil {
			if got := e.d.Info().SizeBytes; got != n {
				t.Fatalf("Resize(%d) = nil but SizeBytes = %d", n, got)
			}
			if n > int64(len(e.model)) {
				e.model = append(e.model, make([]byte, n-int64(len(e.model)))...)
			} else {
				e.model = e.model[:n]
			}
		}
		return err
	}
	for _, bad := range []int64{size + 1, size + bs/2, -bs} {
		if err := r.Resize(ctx, bad); err == nil {
			t.Errorf("Resize(%d) succeeded", bad)
		}
	}
	if e.d.Info().SizeBytes != size {
		t.Fatalf("failed Resize changed the size to %d", e.d.Info().SizeBytes)
	}
	if err := resize(size); err != nil {
		t.Fatalf("Resize to the same size: %v", err)
	}
	// Grow: old data stays, new space reads zeros and takes writes. A
	// Device that cannot resize this storage (a block device) says so.
	if err := resize(2 * size); errors.Is(err, blockdev.ErrNotSupported) {
		if e.d.Info().SizeBytes != size {
			t.Fatalf("unsupported Resize changed the size")
		}
		e.checkAll()
		t.Skipf("Resize: %v", err)
	} else if err != nil {
		t.Fatalf("Resize(grow to %d): %v", 2*size, err)
	}
	e.checkAll()
	e.write(2*size-bs, pattern(31, int(bs)), 0)
	e.write(size-bs, pattern(32, int(2*bs)), 0)
	e.checkAll()
	// Shrink: allowed to refuse with ErrInUse since data lies beyond.
	err := resize(size / 2)
	switch {
	case errors.Is(err, blockdev.ErrInUse):
		if e.d.Info().SizeBytes != 2*size {
			t.Fatalf("refused shrink changed the size")
		}
		e.checkAll()
		return
	case err != nil:
		t.Fatalf("Resize(shrink to %d): %v", size/2, err)
	}
	e.checkAll()
	if err := e.d.ReadAt(ctx, make([]byte, bs), size/2); !errors.Is(err, blockdev.ErrOutOfRange) {
		t.Errorf("ReadAt past the shrunk end = %v; want ErrOutOfRange", err)
	}
	if err := e.d.WriteAt(ctx, make([]byte, bs), size/2, 0); !errors.Is(err, blockdev.ErrOutOfRange) {
		t.Errorf("WriteAt past the shrunk end = %v; want ErrOutOfRange", err)
	}
	// Growing again exposes zeros, not the old data.
	if err := resize(size); err != nil {
		t.Fatalf("Resize(grow again): %v", err)
	}
	e.checkAll()
}

func testCompareAndWrite(t *testing.T, e *env, o *Options) {
	cw, ok := e.d.(blockdev.CompareAndWriter)
	if !ok {
		t.Skip("device does not implement CompareAndWriter")
	}
	ctx := t.Context()
	bs := e.bs
	off, n := 5*bs, 8*bs
	a, b := pattern(40, int(n)), pattern(41, int(n))
	e.write(off, a, 0)
	if err := cw.CompareAndWrite(ctx, a, b, off, 0); err != nil {
		t.Fatalf("CompareAndWrite(match): %v", err)
	}
	copy(e.model[off:], b)
	e.checkAll()
	// A stale compare: nothing written, the first differing byte reported.
	c := pattern(42, int(n))
	err := cw.CompareAndWrite(ctx, a, c, off, blockdev.FUA)
	var me *blockdev.MiscompareError
	if !errors.As(err, &me) || me.Offset != firstDiff(a, b) {
		t.Fatalf("CompareAndWrite(stale) = %v; want *MiscompareError at %d", err, firstDiff(a, b))
	}
	e.checkAll()
	for _, at := range []int64{0, 1, bs - 1, 3*bs + 17, n - 1} {
		bad := bytes.Clone(b)
		bad[at] ^= 0x80
		err := cw.CompareAndWrite(ctx, bad, c, off, 0)
		if !errors.As(err, &me) || me.Offset != at {
			t.Fatalf("CompareAndWrite(differs at %d) = %v; want *MiscompareError at %d", at, err, at)
		}
		e.checkAll()
	}
	// Zeros compare equal to never-written blocks.
	if err := cw.CompareAndWrite(ctx, make([]byte, bs), c[:bs], 100*bs, blockdev.FUA); err != nil {
		t.Fatalf("CompareAndWrite over zeros: %v", err)
	}
	copy(e.model[100*bs:], c[:bs])
	e.checkAll()
}

// testCompareAndWriteAtomic increments a counter block from several
// goroutines with compare-and-write loops; a lost update shows as a short
// count.
func testCompareAndWriteAtomic(t *testing.T, e *env, o *Options) {
	cw, ok := e.d.(blockdev.CompareAndWriter)
	if !ok {
		t.Skip("device does not implement CompareAndWriter")
	}
	const workers, perWorker = 4, 25
	ctx := t.Context()
	bs := e.bs
	off := 2 * bs
	block := func(v uint64) []byte {
		p := bytes.Repeat([]byte{byte(v)}, int(2*bs))
		binary.LittleEndian.PutUint64(p, v)
		return p
	}
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cur := make([]byte, 2*bs)
			for done := 0; done < perWorker; {
				if err := e.d.ReadAt(ctx, cur, off); err != nil {
					errc <- err
					return
				}
				v := binary.LittleEndian.Uint64(cur)
				err := cw.CompareAndWrite(ctx, cur, block(v+1), off, 0)
				var me *blockdev.MiscompareError
				switch {
				case err == nil:
					done++
				case errors.As(err, &me):
				default:
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	copy(e.model[off:], block(workers*perWorker))
	e.checkAll()
}

// foreign is a minimal Device of a kind no implementation knows, for
// CopyRange.
type foreign struct {
	data []byte
	bs   int
}

func (f *foreign) ReadAt(_ context.Context, p []byte, off int64) error {
	if err := blockdev.CheckRange(f.Info(), off, int64(len(p))); err != nil {
		return err
	}
	copy(p, f.data[off:])
	return nil
}
func (f *foreign) WriteAt(_ context.Context, p []byte, off int64, _ blockdev.WriteFlags) error {
	if err := blockdev.CheckRange(f.Info(), off, int64(len(p))); err != nil {
		return err
	}
	copy(f.data[off:], p)
	return nil
}
func (f *foreign) Flush(context.Context) error { return nil }
func (f *foreign) Info() blockdev.Info {
	return blockdev.Info{SizeBytes: int64(len(f.data)), LogicalBlockSize: f.bs, PhysicalBlockSize: f.bs}
}
func (f *foreign) Close() error { return nil }

func testCopyRange(t *testing.T, e *env, o *Options) {
	cr, ok := e.d.(blockdev.CopyRanger)
	if !ok {
		t.Skip("device does not implement CopyRanger")
	}
	ctx := t.Context()
	bs := e.bs
	e.write(0, pattern(50, int(64*bs)), 0)
	switch err := cr.CopyRange(ctx, e.d, 3*bs, 200*bs, 40*bs); {
	case err == nil:
		copy(e.model[200*bs:240*bs], e.model[3*bs:43*bs])
	case errors.Is(err, blockdev.ErrNotSupported): // this storage cannot, and changed nothing
	default:
		t.Fatalf("CopyRange within the device: %v", err)
	}
	e.checkAll()
	src := &foreign{data: pattern(51, int(64*bs)), bs: int(bs)}
	dst := e.info.SizeBytes - 16*bs
	switch err := cr.CopyRange(ctx, src, bs, dst, 10*bs); {
	case err == nil:
		copy(e.model[dst:], src.data[bs:11*bs])
	case errors.Is(err, blockdev.ErrNotSupported):
	default:
		t.Fatalf("CopyRange from a foreign device = %v; want nil or ErrNotSupported", err)
	}
	e.checkAll()
}

func testConcurrentDisjoint(t *testing.T, e *env, o *Options) {
	const writers, readers, ops = 4, 2, 40
	ctx := t.Context()
	size, bs := e.info.SizeBytes, e.bs
	// The first quarter is written once and then only read.
	ro := size / 4
	e.write(0, pattern(60, int(ro)), 0)
	slice := (size - ro) / writers / bs * bs
	var wg sync.WaitGroup
	errc := make(chan error, writers+readers)
	for w := range writers {
		base := ro + int64(w)*slice
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range ops {
				n := (1 + rng.Int64N(32)) * bs
				off := base + rng.Int64N((slice-n)/bs+1)*bs
				p := pattern(uint64(1000*w+i), int(n))
				if err := e.d.WriteAt(ctx, p, off, 0); err != nil {
					errc <- err
					return
				}
				// Only this goroutine touches its slice of the model.
				copy(e.model[off:], p)
				got := make([]byte, n)
				if err := e.d.ReadAt(ctx, got, off); err != nil {
					errc <- err
					return
				}
				if !bytes.Equal(got, p) {
					errc <- fmt.Errorf("writer %d: read back of %d bytes at %d differs", w, n, off)
					return
				}
			}
		}()
	}
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 2))
			want := e.model[:ro] // not written concurrently
			for range ops {
				n := (1 + rng.Int64N(64)) * bs
				off := rng.Int64N((ro-n)/bs+1) * bs
				got := make([]byte, n)
				if err := e.d.ReadAt(ctx, got, off); err != nil {
					errc <- err
					return
				}
				if !bytes.Equal(got, want[off:off+n]) {
					errc <- fmt.Errorf("reader %d: %d bytes at %d differ", r, n, off)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	e.checkAll()
}

// testConcurrentOverlapping writes one range from several goroutines, each
// block filled with one value per write: afterwards every block holds one
// writer's value whole.
func testConcurrentOverlapping(t *testing.T, e *env, o *Options) {
	const writers, ops = 3, 30
	ctx := t.Context()
	bs := e.bs
	n := 16 * bs
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ops {
				v := byte(w*ops + i + 1)
				if err := e.d.WriteAt(ctx, bytes.Repeat([]byte{v}, int(n)), bs, 0); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	got := make([]byte, n)
	if err := e.d.ReadAt(ctx, got, bs); err != nil {
		t.Fatal(err)
	}
	for b := int64(0); b < n/bs; b++ {
		blk := got[b*bs : (b+1)*bs]
		if blk[0] == 0 || bytes.Count(blk, blk[:1]) != len(blk) {
			t.Fatalf("block %d is torn or unwritten after overlapping writes", b+1)
		}
	}
}

// seed returns the model test's seed: LUNWAY_BLOCKDEVTEST_SEED or random.
func seed(t *testing.T) uint64 {
	if v := os.Getenv("LUNWAY_BLOCKDEVTEST_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("LUNWAY_BLOCKDEVTEST_SEED=%q: %v", v, err)
		}
		return s
	}
	return rand.Uint64()
}

// testModel runs a random operation stream against the model.
func testModel(t *testing.T, e *env, o *Options) {
	sd := seed(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("model seed %d (rerun with LUNWAY_BLOCKDEVTEST_SEED=%d)", sd, sd)
		}
	})
	rng := rand.New(rand.NewPCG(sd, 0x626c6b))
	ctx := t.Context()
	bs, size := e.bs, e.info.SizeBytes
	u, _ := e.d.(blockdev.Unmapper)
	z, _ := e.d.(blockdev.ZeroWriter)
	a, _ := e.d.(blockdev.AllocationStatuser)
	cw, _ := e.d.(blockdev.CompareAndWriter)
	written := map[int64]bool{}
	mark := func(off, n int64, nonzero bool) {
		for b := off / bs; b < (off+n)/bs; b++ {
			if nonzero {
				written[b] = true
			} else {
				delete(written, b)
			}
		}
	}
	// Ranges cluster in the first MiB and around the end so that
	// operations overlap, with a few anywhere.
	rangeOf := func() (int64, int64) {
		n := (1 + rng.Int64N(64)) * bs
		var off int64
		switch rng.IntN(4) {
		case 0:
			off = size - n - rng.Int64N(16)*bs
		case 1:
			off = rng.Int64N(size/bs) * bs
		default:
			off = rng.Int64N(min(size, 1<<20)/bs) * bs
		}
		off = max(0, min(off, size-n))
		return off, n
	}
	ops := 300
	if testing.Short() {
		ops = 100
	}
	for i := range ops {
		off, n := rangeOf()
		step := fmt.Sprintf("op %d", i)
		switch k := rng.IntN(12); {
		case k < 4:
			var flags blockdev.WriteFlags
			if rng.IntN(4) == 0 {
				flags = blockdev.FUA
			}
			e.write(off, pattern(rng.Uint64(), int(n)), flags)
			mark(off, n, true)
		case k < 6:
			e.check(off, n)
		case k < 7:
			if err := e.d.Flush(ctx); err != nil {
				t.Fatalf("%s: Flush: %v", step, err)
			}
		case k < 8 && u != nil:
			if err := u.Unmap(ctx, off, n); err != nil {
				t.Fatalf("%s: Unmap(%d, %d): %v", step, off, n, err)
			}
			clear(e.model[off : off+n])
			mark(off, n, false)
		case k < 9 && z != nil:
			if err := z.WriteZeroes(ctx, off, n, rng.IntN(2) == 0, 0); err != nil {
				t.Fatalf("%s: WriteZeroes(%d, %d): %v", step, off, n, err)
			}
			clear(e.model[off : off+n])
			mark(off, n, false)
		case k < 10 && cw != nil:
			cmp := bytes.Clone(e.model[off : off+n])
			data := pattern(rng.Uint64(), int(n))
			wantAt := int64(-1)
			if rng.IntN(2) == 0 {
				wantAt = rng.Int64N(n)
				cmp[wantAt] ^= 1 << rng.IntN(8)
			}
			err := cw.CompareAndWrite(ctx, cmp, data, off, 0)
			var me *blockdev.MiscompareError
			switch {
			case wantAt < 0 && err == nil:
				copy(e.model[off:], data)
				mark(off, n, true)
			case wantAt >= 0 && errors.As(err, &me) && me.Offset == wantAt:
			default:
				t.Fatalf("%s: CompareAndWrite(%d, %d) with mismatch at %d = %v", step, off, n, wantAt, err)
			}
		case k < 11 && a != nil:
			e.checkStatus(a, off, n, written)
		default:
			e.check(off, n)
		}
	}
	e.checkAll()
}

func testDurability(t *testing.T, e *env, o *Options) {
	if o.Reopen == nil {
		t.Skip("no Options.Reopen")
	}
	fua := pattern(70, 64<<10)
	flushed := pattern(71, 128<<10)
	loose := pattern(72, 64<<10)
	e.write(0, fua, blockdev.FUA)
	e.write(64<<10, flushed, 0)
	if err := e.d.Flush(t.Context()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	e.write(256<<10, loose, 0)
	d2 := o.Reopen(t, e.d)
	e2 := &env{t: t, d: d2, info: d2.Info(), bs: e.bs, pbs: e.pbs, model: e.model}
	t.Cleanup(e2.close)
	if e2.info.SizeBytes != e.info.SizeBytes || e2.info.LogicalBlockSize != e.info.LogicalBlockSize {
		t.Fatalf("reopened Info %+v differs from %+v", e2.info, e.info)
	}
	e2.check(0, 192<<10)
	// Unflushed writes survive or not, block by block.
	got := make([]byte, len(loose))
	if err := d2.ReadAt(t.Context(), got, 256<<10); err != nil {
		t.Fatal(err)
	}
	for b := int64(0); b < int64(len(got))/e.bs; b++ {
		blk := got[b*e.bs : (b+1)*e.bs]
		if !isZero(blk) && !bytes.Equal(blk, loose[b*e.bs:(b+1)*e.bs]) {
			t.Fatalf("unflushed block %d is neither old nor new after reopen", b)
		}
	}
	copy(e2.model[256<<10:], got)
	// And once more, on the reopened device.
	e2.write(512<<10, pattern(73, 64<<10), 0)
	if err := d2.Flush(t.Context()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	d3 := o.Reopen(t, d2)
	e3 := &env{t: t, d: d3, info: d3.Info(), bs: e.bs, pbs: e.pbs, model: e2.model}
	t.Cleanup(e3.close)
	e3.checkAll()
}

func testReadOnly(t *testing.T, d blockdev.Device) {
	t.Cleanup(func() {
		if err := d.Close(); err != nil && !errors.Is(err, blockdev.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	ctx := t.Context()
	info := d.Info()
	if !info.ReadOnly {
		t.Fatalf("OpenReadOnly returned a device with Info().ReadOnly false")
	}
	e := newEnv(t, d)
	if err := d.ReadAt(ctx, e.model, 0); err != nil {
		t.Fatalf("ReadAt(whole device): %v", err)
	}
	bs := e.bs
	data := pattern(80, int(4*bs))
	errs := map[string]error{
		"WriteAt":     d.WriteAt(ctx, data, 0, 0),
		"WriteAt FUA": d.WriteAt(ctx, data, bs, blockdev.FUA),
	}
	if u, ok := d.(blockdev.Unmapper); ok {
		errs["Unmap"] = u.Unmap(ctx, 0, 4*bs)
	}
	if z, ok := d.(blockdev.ZeroWriter); ok {
		errs["WriteZeroes"] = z.WriteZeroes(ctx, 0, 4*bs, false, 0)
		errs["WriteZeroes unmap"] = z.WriteZeroes(ctx, 0, 4*bs, true, 0)
	}
	if cw, ok := d.(blockdev.CompareAndWriter); ok {
		errs["CompareAndWrite"] = cw.CompareAndWrite(ctx, e.model[:4*bs], data, 0, 0)
	}
	if r, ok := d.(blockdev.Resizer); ok {
		errs["Resize"] = r.Resize(ctx, info.SizeBytes+64<<10)
	}
	if cr, ok := d.(blockdev.CopyRanger); ok {
		errs["CopyRange"] = cr.CopyRange(ctx, d, 0, 8*bs, 4*bs)
	}
	for op, err := range errs {
		if !errors.Is(err, blockdev.ErrReadOnly) {
			t.Errorf("%s on a read-only device = %v; want ErrReadOnly", op, err)
		}
	}
	if err := d.Flush(ctx); err != nil {
		t.Errorf("Flush on a read-only device: %v", err)
	}
	if d.Info() != info {
		t.Errorf("Info changed: %+v", d.Info())
	}
	e.checkAll()
}

// asyncDone is a Completion that records its calls.
type asyncDone struct {
	calls atomic.Int32
	err   error
	ch    chan struct{}
}

func newAsyncDone() *asyncDone { return &asyncDone{ch: make(chan struct{})} }

func (c *asyncDone) Done(err error) {
	if c.calls.Add(1) == 1 {
		c.err = err
		close(c.ch)
	}
}

// wait waits for the completion and fails the test on a second one.
func (c *asyncDone) wait(t *testing.T, what string) error {
	t.Helper()
	select {
	case <-c.ch:
	case <-time.After(time.Minute):
		t.Fatalf("%s: no completion after a minute", what)
	}
	if n := c.calls.Load(); n != 1 {
		t.Fatalf("%s: completed %d times", what, n)
	}
	return c.err
}

// testAsyncIO starts more reads and writes at once than a Device is
// likely to keep in flight, falling back to the synchronous calls where a
// start is refused, and checks every completion came exactly once with
// the data a synchronous call would give.
func testAsyncIO(t *testing.T, e *env, o *Options) {
	a, ok := e.d.(blockdev.AsyncIO)
	if !ok {
		t.Skip("the Device does not implement AsyncIO")
	}
	ctx, bs, size := t.Context(), e.bs, e.info.SizeBytes
	var c asyncDone
	for _, r := range rangeCases(bs, size) {
		if r.n > 1<<20 {
			continue // no buffer that large
		}
		if a.StartReadAt(ctx, make([]byte, r.n), r.off, &c) || a.StartWriteAt(ctx, make([]byte, r.n), r.off, &c) {
			t.Errorf("started a request of %d bytes at %d (an invalid range)", r.n, r.off)
		}
	}
	if c.calls.Load() != 0 {
		t.Fatalf("a refused start completed")
	}

	// Writes: 512 of 1-8 blocks each, disjoint, all started before any
	// is waited for.
	const n = 512
	rng := rand.New(rand.NewPCG(seed(t), 7))
	span := size / n / bs * bs
	type req struct {
		off  int64
		p    []byte
		done *asyncDone // nil: started synchronously
	}
	reqs := make([]req, n)
	refused := 0
	for i := range reqs {
		r := &reqs[i]
		r.off = int64(i) * span
		r.p = pattern(uint64(9000+i), int((1+rng.Int64N(min(8, span/bs)))*bs))
		r.done = newAsyncDone()
		if !a.StartWriteAt(ctx, r.p, r.off, r.done) {
			refused++
			r.done = nil
			if err := e.d.WriteAt(ctx, r.p, r.off, 0); err != nil {
				t.Fatalf("WriteAt after a refused start: %v", err)
			}
		}
	}
	for i := range reqs {
		r := &reqs[i]
		if r.done != nil {
			if err := r.done.wait(t, fmt.Sprintf("write %d", i)); err != nil {
				t.Fatalf("write %d of %d bytes at %d: %v", i, len(r.p), r.off, err)
			}
		}
		copy(e.model[r.off:], r.p)
	}
	t.Logf("%d of %d writes started asynchronously", n-refused, n)
	if refused == n {
		t.Errorf("every write start was refused")
	}
	e.checkAll()

	// Reads of the same ranges, and of zeros, the same way.
	bufs := make([][]byte, n)
	refused = 0
	for i := range reqs {
		r := &reqs[i]
		bufs[i] = make([]byte, span)
		r.done = newAsyncDone()
		if !a.StartReadAt(ctx, bufs[i], r.off, r.done) {
			refused++
			r.done = nil
			if err := e.d.ReadAt(ctx, bufs[i], r.off); err != nil {
				t.Fatalf("ReadAt after a refused start: %v", err)
			}
		}
	}
	for i := range reqs {
		r := &reqs[i]
		if r.done != nil {
			if err := r.done.wait(t, fmt.Sprintf("read %d", i)); err != nil {
				t.Fatalf("read %d of %d bytes at %d: %v", i, span, r.off, err)
			}
		}
		if d := firstDiff(bufs[i], e.model[r.off:r.off+span]); d >= 0 {
			t.Fatalf("read %d at %d differs at byte %d", i, r.off, d)
		}
	}
	if refused == n {
		t.Errorf("every read start was refused")
	}
	// What was written asynchronously is made durable by Flush like any
	// other write.
	if err := e.d.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range reqs {
		if r := reqs[i]; r.done != nil && r.done.calls.Load() != 1 {
			t.Fatalf("request %d completed %d times", i, r.done.calls.Load())
		}
	}
}
