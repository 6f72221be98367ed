package scsi

import (
	"bytes"
	"encoding/binary"
	"errors"

	"github.com/lunway/lunway/blockdev"
)

// Block commands (SBC-3).

// checkRange validates lba and a block count against the capacity. A
// zero count at the first LBA past the end is valid (SBC-3 4.5); any LBA
// beyond it is LOGICAL BLOCK ADDRESS OUT OF RANGE.
func (r *request) checkRange(lba, n uint64) (off, length int64, s senseData, ok bool) {
	total := uint64(r.info.Blocks())
	if lba > total || n > total-lba {
		return 0, 0, illegal(ascLBAOutOfRange), false
	}
	bs := int64(r.info.LogicalBlockSize)
	return int64(lba) * bs, int64(n) * bs, senseData{}, true
}

// writeProtected reports why writes are refused, if they are: the Device
// is read-only (27/00) or the control page's SWP is set (27/02).
func (r *request) writeProtected() (senseData, bool) {
	if r.info.ReadOnly {
		return senseData{key: senseDataProtect, asc: ascWriteProtected}, true
	}
	if r.lu.mode.swp.Load() {
		return senseData{key: senseDataProtect, asc: ascSoftwareWriteProtected}, true
	}
	return senseData{}, false
}

// writeFlags returns the flags for a write: FUA when the CDB asks for it
// or the write cache is disabled (WCE=0 means write-through).
func (r *request) writeFlags(fua bool) blockdev.WriteFlags {
	if fua || !r.lu.mode.wce.Load() {
		return blockdev.FUA
	}
	return 0
}

func (r *request) read6() Result {
	lba := uint64(be24(r.cdb[1:4]) & 0x1fffff)
	n := uint32(r.cdb[4])
	if n == 0 {
		n = 256
	}
	return r.doRead(lba, n, 4)
}

func (r *request) read10() Result {
	return r.doRead(uint64(be32(r.cdb[2:6])), uint32(be16(r.cdb[7:9])), 7)
}

func (r *request) read12() Result {
	return r.doRead(uint64(be32(r.cdb[2:6])), be32(r.cdb[6:10]), 6)
}

func (r *request) read16() Result {
	return r.doRead(be64(r.cdb[2:10]), be32(r.cdb[10:14]), 10)
}

// doRead reads n blocks at lba into a pooled buffer. lenField is the CDB
// offset of the TRANSFER LENGTH field, for the sense field pointer.
func (r *request) doRead(lba uint64, n uint32, lenField int) Result {
	off, length, res, ok := r.readArgs(lba, n, lenField)
	if !ok {
		return res
	}
	buf, rel := r.lu.pool.get(int(length))
	if err := r.lu.dev.ReadAt(r.ctx, buf, off); err != nil {
		if rel != nil {
			rel()
		}
		return r.failErr(err)
	}
	return Result{Data: buf, TransferLen: uint32(length), release: rel}
}

// readArgs validates a read of n blocks at lba. When it returns false the
// command ends with res (an error, or GOOD for a zero length).
func (r *request) readArgs(lba uint64, n uint32, lenField int) (off, length int64, res Result, ok bool) {
	off, length, res, ok = r.transferArgs(lba, n, lenField, 0x08)
	if ok && length == 0 {
		return 0, 0, Result{}, false
	}
	return off, length, res, ok
}

// transferArgs checks what reads and writes share: no protection
// information asked for (RDPROTECT, WRPROTECT; op6 is the 6-byte opcode,
// which has no such field), the range, the transfer length limit.
func (r *request) transferArgs(lba uint64, n uint32, lenField int, op6 byte) (off, length int64, res Result, ok bool) {
	if r.cdb[0] != op6 && r.cdb[1]>>5 != 0 {
		return 0, 0, r.fail(invalidCDB(1, 7)), false
	}
	off, length, s, ok := r.checkRange(lba, uint64(n))
	if !ok {
		return 0, 0, r.fail(s), false
	}
	if n > r.lu.lim.maxTransfer {
		return 0, 0, r.fail(invalidCDB(lenField, -1)), false
	}
	r.xfer = uint32(length)
	return off, length, Result{}, true
}

func (r *request) write6() Result {
	lba := uint64(be24(r.cdb[1:4]) & 0x1fffff)
	n := uint32(r.cdb[4])
	if n == 0 {
		n = 256
	}
	return r.doWrite(lba, n, 4, false)
}

func (r *request) write10() Result {
	return r.doWrite(uint64(be32(r.cdb[2:6])), uint32(be16(r.cdb[7:9])), 7, r.cdb[1]&0x08 != 0)
}

func (r *request) write12() Result {
	return r.doWrite(uint64(be32(r.cdb[2:6])), be32(r.cdb[6:10]), 6, r.cdb[1]&0x08 != 0)
}

func (r *request) write16() Result {
	return r.doWrite(be64(r.cdb[2:10]), be32(r.cdb[10:14]), 10, r.cdb[1]&0x08 != 0)
}

// lbaLen decodes the LBA and length of the 10-, 12- and 16-byte
// block command layouts, and the length field's offset.
func lbaLen(cdb []byte) (lba uint64, n uint32, lenField int) {
	switch len(cdb) {
	case 10:
		return uint64(be32(cdb[2:6])), uint32(be16(cdb[7:9])), 7
	case 12:
		return uint64(be32(cdb[2:6])), be32(cdb[6:10]), 6
	default:
		return be64(cdb[2:10]), be32(cdb[10:14]), 10
	}
}

// doWrite writes n blocks at lba from the data-out buffer.
func (r *request) doWrite(lba uint64, n uint32, lenField int, fua bool) Result {
	off, length, res, ok := r.writeArgs(lba, n, lenField)
	if !ok {
		return res
	}
	unlock := r.lu.lockWrite(r.ctx, off, length)
	if unlock == nil {
		return r.failErr(r.ctx.Err())
	}
	err := r.lu.dev.WriteAt(r.ctx, r.cmd.DataOut[:length], off, r.writeFlags(fua))
	unlock()
	if err != nil {
		return r.failErr(err)
	}
	return Result{TransferLen: r.xfer}
}

// writeArgs validates a write of n blocks at lba and returns the range
// the data-out buffer covers. When it returns false the command ends with
// res (an error, or GOOD when there is nothing to write).
func (r *request) writeArgs(lba uint64, n uint32, lenField int) (off, length int64, res Result, ok bool) {
	off, length, res, ok = r.transferArgs(lba, n, lenField, 0x0a)
	if !ok {
		return 0, 0, res, false
	}
	if s, ok := r.writeProtected(); ok {
		return 0, 0, r.fail(s), false
	}
	if int64(len(r.cmd.DataOut)) < length {
		// The initiator sent less than the CDB asks for (iSCSI expected
		// data transfer length < transfer length): write the whole
		// blocks it did send; the transport reports the overflow
		// residual (SAM-5 5.4.2, RFC 7143 11.4.5.2).
		bs := int64(r.info.LogicalBlockSize)
		length = int64(len(r.cmd.DataOut)) / bs * bs
	}
	if length == 0 {
		return 0, 0, Result{TransferLen: r.xfer}, false
	}
	return off, length, Result{}, true
}

// WRITE AND VERIFY (10/12/16): the data is written with FUA, so that it is
// on the medium, which is what the verification would check; BYTCHK 01b
// (compare with the data-out buffer) is trivially satisfied by the write
// itself. BYTCHK 1xb is reserved.
func (r *request) writeVerify() Result {
	if r.cdb[1]&0x04 != 0 {
		return r.fail(invalidCDB(1, 2))
	}
	lba, n, lf := lbaLen(r.cdb)
	return r.doWrite(lba, n, lf, true)
}

// VERIFY (10/12/16) (SBC-3 5.33). BYTCHK 00b reads the range to check it
// is readable; 01b compares it with the data-out buffer; 11b compares every
// block with the single block sent. MISCOMPARE (0E/1D/00) carries the
// offset of the first differing byte in INFORMATION.
func (r *request) verify() Result {
	if r.cdb[1]>>5 != 0 { // VRPROTECT
		return r.fail(invalidCDB(1, 7))
	}
	bytchk := (r.cdb[1] >> 1) & 0x03
	if bytchk == 2 {
		return r.fail(invalidCDB(1, 2))
	}
	lba, n, lf := lbaLen(r.cdb)
	off, length, s, ok := r.checkRange(lba, uint64(n))
	if !ok {
		return r.fail(s)
	}
	if n > r.lu.lim.maxTransfer {
		return r.fail(invalidCDB(lf, -1))
	}
	bs := int64(r.info.LogicalBlockSize)
	var want []byte
	switch bytchk {
	case 1:
		r.xfer = uint32(length)
		if int64(len(r.cmd.DataOut)) < length {
			return r.fail(invalidCDB(lf, -1))
		}
		want = r.cmd.DataOut[:length]
	case 3:
		if n > 0 {
			r.xfer = uint32(bs)
		}
		if int64(len(r.cmd.DataOut)) < int64(r.xfer) {
			return r.fail(invalidCDB(lf, -1))
		}
		want = r.cmd.DataOut[:r.xfer]
	}
	if length == 0 {
		return Result{}
	}
	buf, rel := r.lu.pool.get(int(length))
	if rel != nil {
		defer rel()
	}
	if err := r.lu.dev.ReadAt(r.ctx, buf, off); err != nil {
		return r.failErr(err)
	}
	mis := int64(-1)
	switch bytchk {
	case 1:
		mis = firstDiff(buf, want)
	case 3:
		for b := int64(0); b < length && mis < 0; b += bs {
			if d := firstDiff(buf[b:b+bs], want); d >= 0 {
				mis = b + d
			}
		}
	}
	if mis >= 0 {
		return r.failErr(&blockdev.MiscompareError{Offset: mis})
	}
	return Result{TransferLen: r.xfer}
}

// firstDiff returns the index of the first byte where a and b differ
// (len(a) == len(b)), or -1.
func firstDiff(a, b []byte) int64 {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return int64(i)
		}
	}
	return -1
}

// SYNCHRONIZE CACHE (10/16) (SBC-3 5.22): the range is validated, then the
// whole Device is flushed (a superset of the range). IMMED=1 is accepted;
// status is returned after the flush, which is a conforming (if slower)
// way to honour it.
func (r *request) synchronizeCache() Result {
	lba, n, _ := lbaLen(r.cdb)
	if n == 0 {
		if lba > uint64(r.info.Blocks()) {
			return r.fail(illegal(ascLBAOutOfRange))
		}
	} else if _, _, s, ok := r.checkRange(lba, uint64(n)); !ok {
		return r.fail(s)
	}
	if err := r.lu.dev.Flush(r.ctx); err != nil {
		return r.failErr(err)
	}
	return Result{}
}

// PRE-FETCH (10/16): validated and accepted; the Device has no prefetch
// hint, so GOOD (not CONDITION MET, which would promise cache residency).
func (r *request) prefetch() Result {
	lba, n, lf := lbaLen(r.cdb)
	if _, _, s, ok := r.checkRange(lba, uint64(n)); !ok {
		return r.fail(s)
	}
	if n > r.lu.lim.maxTransfer {
		return r.fail(invalidCDB(lf, -1))
	}
	return Result{}
}

// READ CAPACITY (10) (SBC-3 5.15).
func (r *request) readCapacity10() Result {
	if r.cdb[8]&0x01 == 0 && be32(r.cdb[2:6]) != 0 {
		return r.fail(invalidCDB(2, -1))
	}
	d := make([]byte, 8)
	last := uint64(r.info.Blocks()) - 1
	if r.info.Blocks() == 0 {
		last = 0
	}
	binary.BigEndian.PutUint32(d, uint32(min(last, 0xffffffff)))
	binary.BigEndian.PutUint32(d[4:], uint32(r.info.LogicalBlockSize))
	return Result{Data: d, TransferLen: 8}
}

// READ CAPACITY (16) parameter data (SBC-3 5.16), 32 bytes:
//
//	0-7    RETURNED LOGICAL BLOCK ADDRESS (last LBA)
//	8-11   LOGICAL BLOCK LENGTH IN BYTES
//	12     P_TYPE | PROT_EN (0: no protection information)
//	13     P_I_EXPONENT (7:4) | LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (3:0)
//	14-15  LBPME (15) | LBPRZ (14) | LOWEST ALIGNED LBA (13:0)
func (r *request) readCapacity16() Result {
	alloc := be32(r.cdb[10:14])
	if r.cdb[14]&0x01 == 0 && be64(r.cdb[2:10]) != 0 {
		return r.fail(invalidCDB(2, -1))
	}
	d := make([]byte, 32)
	last := uint64(0)
	if b := r.info.Blocks(); b > 0 {
		last = uint64(b - 1)
	}
	binary.BigEndian.PutUint64(d, last)
	binary.BigEndian.PutUint32(d[8:], uint32(r.info.LogicalBlockSize))
	d[13] = r.lu.lim.physPerLogExp & 0x0f
	if r.thin() {
		d[14] = 0x80 | 0x40
	}
	return dataIn(d, alloc)
}

// READ DEFECT DATA (10)/(12): a virtual disk has no defects; the header
// echoes the requested lists and format with a zero-length list.
func (r *request) readDefectData() Result {
	if r.cdb[0] == 0xb7 {
		d := []byte{0, r.cdb[1] & 0x1f, 0, 0, 0, 0, 0, 0}
		return dataIn(d, be32(r.cdb[6:10]))
	}
	d := []byte{0, r.cdb[2] & 0x1f, 0, 0}
	return dataIn(d, uint32(be16(r.cdb[7:9])))
}

// orWriteRetries bounds the compare-and-write rounds of one ORWRITE that
// keeps losing to concurrent writers.
const orWriteRetries = 64

// ORWRITE (16) (SBC-3 5.11): the data-out buffer is ORed into the range,
// atomically against other writes: through the Device's CompareAndWriter
// (read, OR, compare-and-write, retry on a concurrent change), or under
// the LU's exclusive range lock.
func (r *request) orWrite() Result {
	cdb := r.cdb
	if cdb[1]>>5 != 0 { // ORPROTECT
		return r.fail(invalidCDB(1, 7))
	}
	lba, n := be64(cdb[2:10]), be32(cdb[10:14])
	off, length, s, ok := r.checkRange(lba, uint64(n))
	if !ok {
		return r.fail(s)
	}
	if n > r.lu.lim.maxTransfer {
		return r.fail(invalidCDB(10, -1))
	}
	r.xfer = uint32(length)
	if s, ok := r.writeProtected(); ok {
		return r.fail(s)
	}
	if int64(len(r.cmd.DataOut)) < length {
		return r.fail(invalidCDB(10, -1))
	}
	if length == 0 {
		return Result{}
	}
	data := r.cmd.DataOut[:length]
	flags := r.writeFlags(cdb[1]&0x08 != 0)
	cur, rel := r.lu.pool.get(int(length))
	if rel != nil {
		defer rel()
	}
	next, rel2 := r.lu.pool.get(int(length))
	if rel2 != nil {
		defer rel2()
	}
	or := func() error {
		if err := r.lu.dev.ReadAt(r.ctx, cur, off); err != nil {
			return err
		}
		for i := range next {
			next[i] = cur[i] | data[i]
		}
		return nil
	}
	if r.lu.caw == nil {
		unlock := r.lu.ranges.lock(r.ctx, off, length, true)
		if unlock == nil {
			return r.failErr(r.ctx.Err())
		}
		defer unlock()
		if err := or(); err != nil {
			return r.failErr(err)
		}
		if err := r.lu.dev.WriteAt(r.ctx, next, off, flags); err != nil {
			return r.failErr(err)
		}
		return Result{TransferLen: r.xfer}
	}
	for range orWriteRetries {
		if err := or(); err != nil {
			return r.failErr(err)
		}
		err := r.lu.caw.CompareAndWrite(r.ctx, cur, next, off, flags)
		var mis *blockdev.MiscompareError
		if errors.As(err, &mis) {
			continue // another write changed the range in between
		}
		if err != nil {
			return r.failErr(err)
		}
		return Result{TransferLen: r.xfer}
	}
	// Starved by concurrent writers: let the initiator retry.
	return Result{Status: StatusBusy, TransferLen: r.xfer}
}

// zeroChunkBytes bounds one write of an expanded WRITE SAME pattern.
const zeroChunkBytes = 1 << 20

// WRITE SAME (10/16) (SBC-3 5.41, 5.42). A zero block (or NDOB) goes to
// the Device's ZeroWriter when it has one, deallocating when UNMAP is set
// and the LU is thin; otherwise the block is expanded into a bounded
// buffer and written chunk by chunk.
func (r *request) writeSame() Result {
	cdb := r.cdb
	sixteen := cdb[0] == 0x93
	if cdb[1]>>5 != 0 { // WRPROTECT
		return r.fail(invalidCDB(1, 7))
	}
	if cdb[1]&0x10 != 0 { // ANCHOR: anchored LBAs are not supported (ANC_SUP=0)
		return r.fail(invalidCDB(1, 4))
	}
	unmap := cdb[1]&0x08 != 0
	ndob := sixteen && cdb[1]&0x01 != 0
	lba, n, lf := lbaLen(cdb)
	off, length, s, ok := r.checkRange(lba, uint64(n))
	if !ok {
		return r.fail(s)
	}
	if n == 0 { // WSNZ=1
		return r.fail(invalidCDB(lf, -1))
	}
	if uint64(n) > r.lu.lim.maxWriteSame {
		return r.fail(invalidCDB(lf, -1))
	}
	// Write protection is reported before the data-out is judged: a
	// read-only LU refuses the command whatever its pattern.
	if s, ok := r.writeProtected(); ok {
		return r.fail(s)
	}
	bs := r.info.LogicalBlockSize
	var pattern []byte
	if !ndob {
		r.xfer = uint32(bs)
		// Exactly one block: any other size means the initiator and the
		// CDB disagree about what the pattern is.
		if len(r.cmd.DataOut) != bs {
			return r.fail(invalidCDB(lf, -1))
		}
		pattern = r.cmd.DataOut[:bs]
	}
	zero := ndob || allZero(pattern)
	flags := r.writeFlags(false)
	unlock := r.lu.lockWrite(r.ctx, off, length)
	if unlock == nil {
		return r.failErr(r.ctx.Err())
	}
	defer unlock()
	var err error
	switch {
	case zero && r.lu.zeroer != nil:
		err = r.lu.zeroer.WriteZeroes(r.ctx, off, length, unmap && r.thin(), flags)
	case zero && unmap && r.thin():
		err = r.lu.unmapper.Unmap(r.ctx, off, length)
	default:
		err = r.writePattern(pattern, off, length, flags)
	}
	if err != nil {
		return r.failErr(err)
	}
	return Result{TransferLen: r.xfer}
}

// writePattern writes the block pattern (nil: zeros) over [off, off+length)
// in chunks of at most zeroChunkBytes.
func (r *request) writePattern(pattern []byte, off, length int64, flags blockdev.WriteFlags) error {
	chunk := min(length, zeroChunkBytes)
	buf, rel := r.lu.pool.get(int(chunk))
	if rel != nil {
		defer rel()
	}
	if pattern == nil {
		clear(buf)
	} else {
		for i := 0; i < len(buf); i += len(pattern) {
			copy(buf[i:], pattern)
		}
	}
	for length > 0 {
		n := min(length, int64(len(buf)))
		if err := r.lu.dev.WriteAt(r.ctx, buf[:n], off, flags); err != nil {
			return err
		}
		off, length = off+n, length-n
	}
	return nil
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// UNMAP parameter list (SBC-3 5.28):
//
//	0-1   UNMAP DATA LENGTH (n-2)
//	2-3   UNMAP BLOCK DESCRIPTOR DATA LENGTH
//	8-    block descriptors, 16 bytes each: LBA (8), NUMBER OF LOGICAL BLOCKS (4)
func (r *request) unmap() Result {
	if r.cdb[1]&0x01 != 0 { // ANCHOR
		return r.fail(invalidCDB(1, 0))
	}
	plen := int(be16(r.cdb[7:9]))
	r.xfer = uint32(plen)
	if plen == 0 {
		return Result{}
	}
	if plen < 8 || len(r.cmd.DataOut) < plen {
		return r.fail(illegal(ascParamListLength))
	}
	if s, ok := r.writeProtected(); ok {
		return r.fail(s)
	}
	p := r.cmd.DataOut[:plen]
	bdl := int(be16(p[2:4]))
	if bdl > plen-8 {
		bdl = plen - 8
	}
	nd := bdl / 16
	if uint32(nd) > r.lu.lim.maxUnmapDesc {
		return r.fail(invalidParam(2, -1))
	}
	var total uint64
	for i := 0; i < nd; i++ {
		d := p[8+16*i:]
		lba, n := be64(d[0:8]), uint64(be32(d[8:12]))
		if _, _, s, ok := r.checkRange(lba, n); !ok {
			return r.fail(s)
		}
		total += n
	}
	if total > r.lu.lim.maxWriteSame {
		return r.fail(invalidParam(8, -1))
	}
	for i := 0; i < nd; i++ {
		d := p[8+16*i:]
		off, length, _, _ := r.checkRange(be64(d[0:8]), uint64(be32(d[8:12])))
		if length == 0 {
			continue
		}
		unlock := r.lu.lockWrite(r.ctx, off, length)
		if unlock == nil {
			return r.failErr(r.ctx.Err())
		}
		err := r.lu.unmapper.Unmap(r.ctx, off, length)
		unlock()
		if err != nil {
			return r.failErr(err)
		}
	}
	return Result{TransferLen: r.xfer}
}

// maxLBAStatusDescriptors bounds one GET LBA STATUS answer.
const maxLBAStatusDescriptors = 1024

// maxLBAStatusQueryBytes bounds the range one GET LBA STATUS asks the
// Device about.
const maxLBAStatusQueryBytes = 4 << 30

// GET LBA STATUS (SBC-3 5.7): parameter data is an 8-byte header (data
// length, reserved) and 16-byte descriptors: LBA (8), NUMBER OF LOGICAL
// BLOCKS (4), PROVISIONING STATUS (byte 12, 3:0).
func (r *request) getLBAStatus() Result {
	lba := be64(r.cdb[2:10])
	alloc := be32(r.cdb[10:14])
	total := uint64(r.info.Blocks())
	if lba >= total {
		return r.fail(illegal(ascLBAOutOfRange))
	}
	bs := int64(r.info.LogicalBlockSize)
	off := int64(lba) * bs
	length := min(int64(total-lba)*bs, maxLBAStatusQueryBytes)
	maxDesc := maxLBAStatusDescriptors
	if alloc >= 24 {
		maxDesc = min(maxDesc, int(alloc-8)/16)
	} else {
		maxDesc = 1
	}
	exts, err := r.lu.lbaStatus.AllocationStatus(r.ctx, off, length)
	if err != nil {
		return r.failErr(err)
	}
	d := make([]byte, 8, 8+16*min(len(exts), maxDesc))
	next := off
	for _, e := range exts {
		if len(d) >= 8+16*maxDesc {
			break
		}
		if e.Off != next || e.Len <= 0 || e.Len > off+length-e.Off || e.Len%bs != 0 {
			break // a malformed answer ends the list rather than lying
		}
		next = e.Off + e.Len
		start, count := uint64(e.Off/bs), uint64(e.Len/bs)
		for count > 0 && len(d) < 8+16*maxDesc {
			c := min(count, 0xffffffff)
			var desc [16]byte
			binary.BigEndian.PutUint64(desc[0:], start)
			binary.BigEndian.PutUint32(desc[8:], uint32(c))
			desc[12] = byte(e.State) & 0x0f
			d = append(d, desc[:]...)
			start, count = start+c, count-c
		}
	}
	binary.BigEndian.PutUint32(d, uint32(len(d)-4))
	return dataIn(d, alloc)
}
