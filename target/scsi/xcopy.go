package scsi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/lunway/lunway/blockdev"
)

// ErrNAAInUse: an LU with the same NAA designator is attached elsewhere
// in the Registry.
var ErrNAAInUse = errors.New("scsi: NAA designator already in use")

// Registry is the set of LUs of a daemon, by NAA designator, that
// EXTENDED COPY can reach. Targets created with the same Registry can
// copy between each other's LUs. It is safe for concurrent use.
type Registry struct {
	mu  sync.RWMutex
	lus map[[16]byte]*LU
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry { return &Registry{lus: make(map[[16]byte]*LU)} }

func (g *Registry) add(lu *LU) error {
	naa := lu.NAA()
	g.mu.Lock()
	defer g.mu.Unlock()
	if other, ok := g.lus[naa]; ok && other != lu {
		return fmt.Errorf("%w: %x", ErrNAAInUse, naa)
	}
	g.lus[naa] = lu
	return nil
}

func (g *Registry) remove(lu *LU) {
	naa := lu.NAA()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.lus[naa] == lu {
		delete(g.lus, naa)
	}
}

// Lookup returns the LU with the NAA designator, or nil.
func (g *Registry) Lookup(naa [16]byte) *LU {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.lus[naa]
}

// EXTENDED COPY limits (RECEIVE COPY RESULTS, OPERATING PARAMETERS).
const (
	xcopyMaxTargetDescs  = 16
	xcopyMaxSegmentDescs = 32
	xcopyTargetDescLen   = 32
	xcopySegmentDescLen  = 28
	xcopyMaxListLen      = xcopyMaxTargetDescs*xcopyTargetDescLen + xcopyMaxSegmentDescs*xcopySegmentDescLen
	xcopyChunkBytes      = 1 << 20
	xcopyMaxStatus       = 64
)

// copyStatus is the outcome of one EXTENDED COPY, kept for RECEIVE COPY
// RESULTS (COPY STATUS).
type copyStatus struct {
	initiator string // initiator port name
	listID    byte
	status    byte // 01h completed without error, 02h with error
	segments  uint16
	bytes     uint64
}

// copyLog keeps the last xcopyMaxStatus copy outcomes of an LU.
type copyLog struct {
	mu      sync.Mutex
	entries []copyStatus
}

func (l *copyLog) put(s copyStatus) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, e := range l.entries {
		if e.initiator == s.initiator && e.listID == s.listID {
			l.entries = append(l.entries[:i], l.entries[i+1:]...)
			break
		}
	}
	if len(l.entries) >= xcopyMaxStatus {
		l.entries = l.entries[1:]
	}
	l.entries = append(l.entries, s)
}

func (l *copyLog) get(initiator string, listID byte) (copyStatus, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.entries {
		if e.initiator == initiator && e.listID == listID {
			return e, true
		}
	}
	return copyStatus{}, false
}

func initiatorOf(n *Nexus) string {
	if n == nil {
		return ""
	}
	return n.InitiatorPortName()
}

// xcopySegment is one decoded block→block segment descriptor.
type xcopySegment struct {
	src, dst       *LU
	srcLBA, dstLBA uint64
	blocks         uint32
}

// EXTENDED COPY (LID1) (SPC-4 6.4), parameter list:
//
//	0      LIST IDENTIFIER
//	1      STR (5) | LIST ID USAGE (4:3) | PRIORITY (2:0)
//	2-3    CSCD (target) DESCRIPTOR LIST LENGTH
//	8-11   SEGMENT DESCRIPTOR LIST LENGTH
//	12-15  INLINE DATA LENGTH (must be 0)
//	16-    target descriptors (32 bytes, type E4h: identification by NAA),
//	       then segment descriptors (type 02h: block → block, 28 bytes)
//
// The copy runs synchronously; RECEIVE COPY RESULTS reports its outcome.
func (r *request) extendedCopy() Result {
	plen := int(be32(r.cdb[10:14]))
	r.xfer = uint32(plen)
	if plen == 0 {
		return Result{}
	}
	if plen < 16 || len(r.cmd.DataOut) < plen {
		return r.fail(illegal(ascParamListLength))
	}
	p := r.cmd.DataOut[:plen]
	listID := p[0]
	switch (p[1] >> 3) & 0x03 {
	case 0, 2:
	case 3:
		if listID != 0 {
			return r.fail(invalidParam(0, -1))
		}
	default:
		return r.fail(invalidParam(1, 4))
	}
	tdl := int(be16(p[2:4]))
	sdl := int(be32(p[8:12]))
	if be32(p[12:16]) != 0 {
		return r.fail(invalidParam(12, -1))
	}
	// SPC-4 6.4.3: a descriptor list longer than MAXIMUM DESCRIPTOR LIST
	// LENGTH, or than the parameter list, is a length error; then the
	// descriptor counts are checked.
	if sdl > plen || tdl+sdl > xcopyMaxListLen || 16+tdl+sdl > plen {
		return r.fail(illegal(ascParamListLength))
	}
	if tdl%xcopyTargetDescLen != 0 {
		return r.fail(invalidParam(2, -1))
	}
	if tdl/xcopyTargetDescLen > xcopyMaxTargetDescs {
		return r.fail(illegal(ascTooManyTargetDescriptors))
	}
	// Target descriptors.
	var targets []*LU
	for off := 16; off < 16+tdl; off += xcopyTargetDescLen {
		d := p[off : off+xcopyTargetDescLen]
		if d[0] != 0xe4 {
			return r.fail(illegal(ascUnsupportedTargetDescType))
		}
		if d[1]&0x1f != 0 { // peripheral device type: direct access only
			return r.fail(invalidParam(off+1, 4))
		}
		if d[1]&0x20 != 0 { // NUL: null device not supported
			return r.fail(invalidParam(off+1, 5))
		}
		codeSet, assoc, typ, dlen := d[4]&0x0f, (d[5]>>4)&0x03, d[5]&0x0f, int(d[7])
		if codeSet != 1 || assoc != 0 || typ != 3 || dlen != 16 {
			return r.fail(invalidParam(off+4, -1))
		}
		var naa [16]byte
		copy(naa[:], d[8:24])
		lu := r.t.registry.Lookup(naa)
		if lu == nil {
			return r.fail(senseData{key: senseCopyAborted, asc: ascCopyTargetDeviceNotReach})
		}
		if bs := be24(d[29:32]); bs != 0 && bs != uint32(lu.dev.Info().LogicalBlockSize) {
			return r.fail(invalidParam(off+29, -1))
		}
		targets = append(targets, lu)
	}
	// Segment descriptors.
	var segs []xcopySegment
	for off := 16 + tdl; off < 16+tdl+sdl; {
		if len(segs) == xcopyMaxSegmentDescs {
			return r.fail(illegal(ascTooManySegmentDescriptors))
		}
		if 16+tdl+sdl-off < 4 {
			return r.fail(illegal(ascParamListLength))
		}
		d := p[off : 16+tdl+sdl]
		if d[0] != 0x02 {
			return r.fail(illegal(ascUnsupportedSegmentDescType))
		}
		if be16(d[2:4]) != 0x18 || len(d) < xcopySegmentDescLen {
			return r.fail(invalidParam(off+2, -1))
		}
		si, di := int(be16(d[4:6])), int(be16(d[6:8]))
		if si >= len(targets) || di >= len(targets) {
			// An index naming no target descriptor names an
			// unreachable copy target (SPC-4 6.4.6.1).
			return r.fail(senseData{key: senseCopyAborted, asc: ascCopyTargetDeviceNotReach})
		}
		src, dst := targets[si], targets[di]
		if src.dev.Info().LogicalBlockSize != dst.dev.Info().LogicalBlockSize {
			return r.fail(invalidParam(off+6, -1))
		}
		segs = append(segs, xcopySegment{src: src, dst: dst,
			srcLBA: be64(d[12:20]), dstLBA: be64(d[20:28]), blocks: uint32(be16(d[10:12]))})
		off += xcopySegmentDescLen
	}
	st := copyStatus{initiator: initiatorOf(r.cmd.Nexus), listID: listID, status: 0x01}
	keep := (p[1]>>3)&0x03 != 3
	for i, s := range segs {
		n, res, ok := r.copySegment(s)
		st.bytes += uint64(n)
		if !ok {
			st.status = 0x02
			if keep {
				r.lu.copies.put(st)
			}
			return res
		}
		st.segments = uint16(i + 1)
	}
	if keep {
		r.lu.copies.put(st)
	}
	return Result{TransferLen: r.xfer}
}

// copySegment copies one segment: through the destination's CopyRanger
// when it has one and accepts the source, else by reading and writing in
// bounded chunks. Errors end the command with COPY ABORTED.
func (r *request) copySegment(s xcopySegment) (int64, Result, bool) {
	srcInfo, dstInfo := s.src.dev.Info(), s.dst.dev.Info()
	bs := int64(srcInfo.LogicalBlockSize)
	if s.srcLBA > uint64(srcInfo.Blocks()) || uint64(s.blocks) > uint64(srcInfo.Blocks())-s.srcLBA ||
		s.dstLBA > uint64(dstInfo.Blocks()) || uint64(s.blocks) > uint64(dstInfo.Blocks())-s.dstLBA {
		// A segment beyond a copy target's capacity aborts the copy
		// (COPY ABORTED, no additional sense, as SPC-4 6.4.6.1 leaves
		// the code to the copy manager).
		return 0, r.fail(senseData{key: senseCopyAborted, asc: ascNoAdditionalSense}), false
	}
	if dstInfo.ReadOnly || s.dst.mode.swp.Load() {
		return 0, r.fail(senseData{key: senseDataProtect, asc: ascWriteProtected}), false
	}
	length := int64(s.blocks) * bs
	if length == 0 {
		return 0, Result{}, true
	}
	srcOff, dstOff := int64(s.srcLBA)*bs, int64(s.dstLBA)*bs
	unlock := s.dst.lockWrite(r.ctx, dstOff, length)
	if unlock == nil {
		return 0, r.failErr(r.ctx.Err()), false
	}
	defer unlock()
	if s.dst.copier != nil {
		err := s.dst.copier.CopyRange(r.ctx, s.src.dev, srcOff, dstOff, length)
		if err == nil && !s.dst.mode.wce.Load() {
			// CopyRange has no FUA: with the write cache disabled the
			// copy must be durable before it completes.
			err = s.dst.dev.Flush(r.ctx)
		}
		if err == nil {
			return length, Result{}, true
		}
		if !errors.Is(err, blockdev.ErrNotSupported) {
			return 0, r.copyAborted(err), false
		}
	}
	var flags blockdev.WriteFlags
	if !s.dst.mode.wce.Load() {
		flags = blockdev.FUA // the destination's write cache is disabled
	}
	buf, rel := s.dst.pool.get(int(min(length, xcopyChunkBytes)))
	if rel != nil {
		defer rel()
	}
	var done int64
	for done < length {
		n := min(length-done, int64(len(buf)))
		if err := s.src.dev.ReadAt(r.ctx, buf[:n], srcOff+done); err != nil {
			return done, r.copyAborted(err), false
		}
		if err := s.dst.dev.WriteAt(r.ctx, buf[:n], dstOff+done, flags); err != nil {
			return done, r.copyAborted(err), false
		}
		done += n
	}
	return done, Result{}, true
}

// copyAborted maps a storage error met during a copy: transient errors
// keep their retryable status; sense-bearing ones become COPY ABORTED with
// the same additional sense code.
func (r *request) copyAborted(err error) Result {
	st, s := errorSense(err)
	if st != StatusCheckCondition {
		return Result{Status: st, TransferLen: r.xfer}
	}
	s.key = senseCopyAborted
	return r.fail(s)
}

// RECEIVE COPY RESULTS (SPC-4 6.18): COPY STATUS (00h) and OPERATING
// PARAMETERS (03h).
func (r *request) receiveCopyResults() Result {
	alloc := be32(r.cdb[10:14])
	switch r.cdb[1] & 0x1f {
	case 0x00:
		st, ok := r.lu.copies.get(initiatorOf(r.cmd.Nexus), r.cdb[2])
		if !ok {
			return r.fail(invalidCDB(2, -1))
		}
		d := make([]byte, 12)
		binary.BigEndian.PutUint32(d, 8)
		d[4] = st.status
		binary.BigEndian.PutUint16(d[5:], st.segments)
		d[7] = 0x00 // TRANSFER COUNT UNITS: bytes
		binary.BigEndian.PutUint32(d[8:], uint32(min(st.bytes, 0xffffffff)))
		return dataIn(d, alloc)
	case 0x03:
		d := make([]byte, 46)
		binary.BigEndian.PutUint32(d, uint32(len(d)-4))
		d[4] = 0x01 // SNLID: list identifiers are not required to be unique
		binary.BigEndian.PutUint16(d[8:], xcopyMaxTargetDescs)
		binary.BigEndian.PutUint16(d[10:], xcopyMaxSegmentDescs)
		binary.BigEndian.PutUint32(d[12:], xcopyMaxListLen)
		binary.BigEndian.PutUint32(d[16:], 0xffff*uint32(r.info.LogicalBlockSize)) // MAXIMUM SEGMENT LENGTH
		// MAXIMUM INLINE DATA LENGTH, HELD DATA LIMIT, MAXIMUM STREAM
		// DEVICE TRANSFER SIZE: 0.
		binary.BigEndian.PutUint16(d[34:], 1) // TOTAL CONCURRENT COPIES
		d[36] = 1                             // MAXIMUM CONCURRENT COPIES
		d[37] = byte(topBit16(uint16(r.info.LogicalBlockSize)))
		d[43] = 2 // IMPLEMENTED DESCRIPTOR LIST LENGTH
		d[44], d[45] = 0x02, 0xe4
		return dataIn(d, alloc)
	}
	return r.fail(invalidCDB(1, 4))
}

func topBit16(v uint16) int {
	n := 0
	for v > 1 {
		v >>= 1
		n++
	}
	return n
}

// vaaiEntries are the hypervisor offload (VAAI) commands of the command
// table: EXTENDED COPY, RECEIVE COPY RESULTS and COMPARE AND WRITE (whose
// handler is in caw.go).
func vaaiEntries() []opInfo {
	const ctl = 0x00
	return []opInfo{
		{name: "EXTENDED COPY", op: 0x83, sa: 0x00, hasSA: true, dir: dirOut, handle: (*request).extendedCopy, usage: u(0xff, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, ctl), pr: prWrite, supported: hasRegistry, timeout: 300},
		{name: "RECEIVE COPY RESULTS", op: 0x84, sa: 0x00, hasSA: true, dir: dirIn, handle: (*request).receiveCopyResults, usage: u(0xff, 0x1f, 0xff, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, ctl), supported: hasRegistry, timeout: 5},
		{name: "RECEIVE COPY RESULTS", op: 0x84, sa: 0x03, hasSA: true, dir: dirIn, handle: (*request).receiveCopyResults, usage: u(0xff, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, ctl), supported: hasRegistry, timeout: 5},
		{name: "COMPARE AND WRITE", op: 0x89, dir: dirOut, handle: (*request).compareAndWrite, usage: u(0xff, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0xff, 0x3f, ctl), pr: prWrite, timeout: 30},
	}
}

// hasRegistry: EXTENDED COPY needs the LU attached to a Target (whose
// Registry resolves copy targets).
func hasRegistry(lu *LU) bool { return lu.target() != nil }
