package initiator

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/lunway/lunway/target/pdu"
	"github.com/lunway/lunway/target/scsi"
)

// Command is one SCSI command.
type Command struct {
	LUN uint64
	// CDB is the command descriptor block (6..260 bytes).
	CDB []byte
	// Read and Write are the data directions.
	Read, Write bool
	// ExpectedLen is the expected data transfer length; 0 means len(Data)
	// for writes and len(ReadBuf) for reads.
	ExpectedLen uint32
	// Data is the data-out buffer of a write (len >= ExpectedLen).
	Data []byte
	// ReadBuf receives data-in (len >= ExpectedLen); nil allocates.
	ReadBuf []byte
	// Attr is the task attribute (simple by default).
	Attr scsi.TaskAttr
	// Immediate sends the command with the I bit.
	Immediate bool
	// ITT, when set, is used as the task tag (for task management tests);
	// otherwise one is assigned. It is reported in Result.ITT.
	ITT uint32
}

// Result is a completed command.
type Result struct {
	// ITT and CmdSN the command was sent with.
	ITT, CmdSN uint32
	// Response is the iSCSI response code (0: completed at target).
	Response uint8
	Status   uint8
	// Sense data of a CHECK CONDITION (raw, parsed by SenseData).
	Sense []byte
	// Data is the data-in received.
	Data []byte
	// Residual with Overflow or Underflow as the target reported it.
	Residual            uint32
	Overflow, Underflow bool
}

// Err returns a *StatusError unless the status is GOOD.
func (r *Result) Err() error {
	if r.Response != pdu.RespCommandCompleted {
		return fmt.Errorf("%w: iSCSI response 0x%02x", ErrProtocol, r.Response)
	}
	if r.Status == uint8(scsi.StatusGood) {
		return nil
	}
	s, _ := ParseSense(r.Sense)
	return &StatusError{Status: r.Status, Sense: s}
}

// SenseData decodes the sense data.
func (r *Result) SenseData() Sense {
	s, _ := ParseSense(r.Sense)
	return s
}

// UnitAttention reports a CHECK CONDITION with sense key UNIT ATTENTION.
func (r *Result) UnitAttention() bool {
	return r.Status == uint8(scsi.StatusCheckCondition) && r.SenseData().Key == SenseUnitAttention
}

// Pending is a command sent and not yet completed.
type Pending struct {
	s   *Session
	r   *request
	res *Result
}

// Wait waits for the command's result. On ctx's end the command is
// forgotten (not aborted: use TaskManagement).
func (p *Pending) Wait(ctx context.Context) (*Result, error) {
	select {
	case <-p.r.done:
		if p.r.err != nil {
			return p.res, p.r.err
		}
		return p.res, nil
	case <-ctx.Done():
		p.s.forget(p.r)
		return nil, ctx.Err()
	}
}

// Do sends a command and waits for its result. A non-GOOD status is not an
// error of Do: check Result.Err.
func (s *Session) Do(ctx context.Context, cmd *Command) (*Result, error) {
	p, err := s.Start(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return p.Wait(ctx)
}

// Start sends a command and returns without waiting for its result.
func (s *Session) Start(ctx context.Context, cmd *Command) (*Pending, error) {
	return s.start(ctx, cmd, nil)
}

// StartFunc sends a command and returns; done is called with its result
// (and an error when the session ended first) exactly once, on the
// session's reader goroutine (or the one that ends the session). done
// must not block: it may hand the result to another goroutine, which may
// start the next command. This is how an event-driven initiator (libiscsi,
// which QEMU uses) keeps many commands in flight without a goroutine
// waiting for each. When StartFunc returns an error (ctx ended while the
// command waited for the CmdSN window, the session had ended), the command
// was not sent and done is not called.
func (s *Session) StartFunc(ctx context.Context, cmd *Command, done func(*Result, error)) error {
	if done == nil {
		return errors.New("initiator: StartFunc without a done function")
	}
	_, err := s.start(ctx, cmd, done)
	return err
}

func (s *Session) start(ctx context.Context, cmd *Command, cb func(*Result, error)) (*Pending, error) {
	if len(cmd.CDB) < 6 || len(cmd.CDB) > pdu.MaxCDBLength {
		return nil, fmt.Errorf("initiator: CDB length %d", len(cmd.CDB))
	}
	edtl := cmd.ExpectedLen
	if edtl == 0 {
		if cmd.Write {
			edtl = uint32(len(cmd.Data))
		} else if cmd.Read {
			edtl = uint32(len(cmd.ReadBuf))
		}
	}
	if cmd.Write && uint32(len(cmd.Data)) < edtl {
		return nil, fmt.Errorf("initiator: %d bytes of data for an expected length of %d", len(cmd.Data), edtl)
	}
	itt := cmd.ITT
	if itt == 0 {
		itt = s.nextITT()
	}
	r := &request{itt: itt, cmd: cmd, isSCSI: true, res: &Result{ITT: itt}, cb: cb}
	if cmd.Read {
		r.buf = cmd.ReadBuf
		if uint32(len(r.buf)) < edtl {
			r.buf = make([]byte, edtl)
		}
		r.buf = r.buf[:edtl]
	}
	if cmd.Write {
		r.out = cmd.Data[:edtl]
	}
	r.lun = scsi.EncodeLUN(cmd.LUN)
	var c pdu.SCSICommand
	c.Immediate, c.Read, c.Write, c.Attr = cmd.Immediate, cmd.Read, cmd.Write, uint8(cmd.Attr)
	if cmd.Attr == scsi.AttrUntagged && !cmd.Immediate {
		c.Attr = uint8(scsi.AttrSimple)
	}
	c.LUN = r.lun
	c.ITT = itt
	c.ExpectedDataTransferLength = edtl
	copy(c.CDB[:], cmd.CDB)
	var ahs []byte
	if len(cmd.CDB) > 16 {
		ahs = pdu.AppendExtendedCDB(nil, cmd.CDB[16:])
	}
	p := &s.params
	var imm []byte
	unsol := uint32(0)
	if cmd.Write && edtl > 0 {
		firstBurst := min(uint32(p.FirstBurstLength), edtl)
		if p.ImmediateData {
			imm = r.out[:min(firstBurst, uint32(p.TargetMaxRecvDataSegmentLength))]
		}
		if !p.InitialR2T {
			unsol = firstBurst
		}
	}
	c.Final = unsol <= uint32(len(imm))
	var b pdu.BHS
	c.Encode(&b)
	if err := s.register(r); err != nil {
		return nil, err
	}
	var after func() error
	if unsol > uint32(len(imm)) {
		after = func() error { return s.sendUnsolicited(r, uint32(len(imm)), unsol) }
	}
	if err := s.send(ctx, &b, ahs, imm, &r.res.CmdSN, after); err != nil {
		s.forget(r)
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		s.fail(err)
		return nil, err
	}
	return &Pending{s: s, r: r, res: r.res}, nil
}

// sendUnsolicited sends unsolicited Data-Out for [off, end).
func (s *Session) sendUnsolicited(r *request, off, end uint32) error {
	return s.dataOutSeq(r, pdu.ReservedTag, off, end)
}

// sendData answers an R2T.
func (s *Session) sendData(r *request, ttt, off, length uint32) error {
	end := uint64(off) + uint64(length)
	if end > uint64(len(r.out)) {
		return fmt.Errorf("%w: R2T beyond the data (%d > %d)", ErrProtocol, end, len(r.out))
	}
	return s.dataOutSeq(r, ttt, off, uint32(end))
}

// dataOutSeq sends one Data-Out sequence.
func (s *Session) dataOutSeq(r *request, ttt, off, end uint32) error {
	maxSeg := uint32(s.params.TargetMaxRecvDataSegmentLength)
	var sn uint32
	for off < end {
		n := min(maxSeg, end-off)
		var b pdu.BHS
		(&pdu.DataOut{Final: off+n == end, LUN: r.lun, ITT: r.itt, TTT: ttt, ExpStatSN: s.ExpStatSN(),
			DataSN: sn, BufferOffset: off}).Encode(&b)
		if err := s.writePDU(&b, nil, r.out[off:off+n]); err != nil {
			return err
		}
		sn++
		off += n
	}
	return nil
}

// TaskManagement sends a task management request and returns the
// response code (pdu.TMFRespComplete...).
func (s *Session) TaskManagement(ctx context.Context, fn scsi.TMFunction, lun uint64, refTag, refCmdSN uint32) (uint8, error) {
	var b pdu.BHS
	(&pdu.TaskMgmtRequest{Immediate: true, Function: uint8(fn), LUN: scsi.EncodeLUN(lun),
		ITT: s.nextITT(), RTT: refTag, RefCmdSN: refCmdSN}).Encode(&b)
	if fn != scsi.TMFAbortTask && fn != scsi.TMFQueryTask {
		b.SetWord(20, pdu.ReservedTag)
	}
	p, err := s.roundTrip(ctx, &b, nil)
	if err != nil {
		return 0, err
	}
	var tr pdu.TaskMgmtResponse
	if err := tr.Decode(&p.BHS); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	return tr.Response, nil
}

// Helpers for common commands. Block counts and sizes are the caller's.

// TestUnitReady sends TEST UNIT READY.
func (s *Session) TestUnitReady(ctx context.Context, lun uint64) (*Result, error) {
	return s.Do(ctx, &Command{LUN: lun, CDB: make([]byte, 6)})
}

// Inquiry sends INQUIRY (standard data, or VPD page when evpd).
func (s *Session) Inquiry(ctx context.Context, lun uint64, evpd bool, page uint8, alloc uint16) (*Result, error) {
	cdb := []byte{0x12, 0, page, byte(alloc >> 8), byte(alloc), 0}
	if evpd {
		cdb[1] = 1
	}
	return s.Do(ctx, &Command{LUN: lun, CDB: cdb, Read: true, ExpectedLen: uint32(alloc)})
}

// Capacity is READ CAPACITY (16) data.
type Capacity struct {
	Blocks    uint64
	BlockSize uint32
}

// ReadCapacity16 sends READ CAPACITY (16) (falling back to READ CAPACITY
// (10) when the target does not know it).
func (s *Session) ReadCapacity16(ctx context.Context, lun uint64) (Capacity, error) {
	cdb := make([]byte, 16)
	cdb[0], cdb[1] = 0x9e, 0x10
	binary.BigEndian.PutUint32(cdb[10:], 32)
	res, err := s.Do(ctx, &Command{LUN: lun, CDB: cdb, Read: true, ExpectedLen: 32})
	if err != nil {
		return Capacity{}, err
	}
	if err := res.Err(); err == nil && len(res.Data) >= 12 {
		return Capacity{Blocks: binary.BigEndian.Uint64(res.Data) + 1, BlockSize: binary.BigEndian.Uint32(res.Data[8:])}, nil
	} else if res.SenseData().Key != SenseIllegalRequest {
		if err == nil {
			err = fmt.Errorf("%w: short READ CAPACITY (16) data", ErrProtocol)
		}
		return Capacity{}, err
	}
	res, err = s.Do(ctx, &Command{LUN: lun, CDB: []byte{0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}, Read: true, ExpectedLen: 8})
	if err != nil {
		return Capacity{}, err
	}
	if err := res.Err(); err != nil {
		return Capacity{}, err
	}
	if len(res.Data) < 8 {
		return Capacity{}, fmt.Errorf("%w: short READ CAPACITY (10) data", ErrProtocol)
	}
	return Capacity{Blocks: uint64(binary.BigEndian.Uint32(res.Data)) + 1, BlockSize: binary.BigEndian.Uint32(res.Data[4:])}, nil
}

// Read16 reads blocks at lba into buf (len(buf) = blocks*blockSize).
func (s *Session) Read16(ctx context.Context, lun, lba uint64, blockSize int, buf []byte) (*Result, error) {
	cdb := make([]byte, 16)
	cdb[0] = 0x88
	binary.BigEndian.PutUint64(cdb[2:], lba)
	binary.BigEndian.PutUint32(cdb[10:], uint32(len(buf)/blockSize))
	return s.Do(ctx, &Command{LUN: lun, CDB: cdb, Read: true, ReadBuf: buf})
}

// Write16 writes data at lba, with FUA when fua.
func (s *Session) Write16(ctx context.Context, lun, lba uint64, blockSize int, data []byte, fua bool) (*Result, error) {
	cdb := make([]byte, 16)
	cdb[0] = 0x8a
	if fua {
		cdb[1] = 0x08
	}
	binary.BigEndian.PutUint64(cdb[2:], lba)
	binary.BigEndian.PutUint32(cdb[10:], uint32(len(data)/blockSize))
	return s.Do(ctx, &Command{LUN: lun, CDB: cdb, Write: true, Data: data})
}

// SynchronizeCache sends SYNCHRONIZE CACHE (10) for the whole LU.
func (s *Session) SynchronizeCache(ctx context.Context, lun uint64) (*Result, error) {
	return s.Do(ctx, &Command{LUN: lun, CDB: []byte{0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0}})
}

// ReportLUNs returns the LUNs of the target.
func (s *Session) ReportLUNs(ctx context.Context) ([]uint64, error) {
	const alloc = 8 + 8*1024
	cdb := make([]byte, 12)
	cdb[0] = 0xa0
	binary.BigEndian.PutUint32(cdb[6:], alloc)
	res, err := s.Do(ctx, &Command{LUN: 0, CDB: cdb, Read: true, ExpectedLen: alloc})
	if err != nil {
		return nil, err
	}
	if err := res.Err(); err != nil {
		return nil, err
	}
	if len(res.Data) < 8 {
		return nil, fmt.Errorf("%w: short REPORT LUNS data", ErrProtocol)
	}
	n := int(binary.BigEndian.Uint32(res.Data)) / 8
	var luns []uint64
	for i := 0; i < n && 8+8*i+8 <= len(res.Data); i++ {
		luns = append(luns, scsi.DecodeLUN([8]byte(res.Data[8+8*i:])))
	}
	return luns, nil
}

// ClearUnitAttentions sends TEST UNIT READY until no unit attention is
// reported (at most 16 times) and returns the attentions seen.
func (s *Session) ClearUnitAttentions(ctx context.Context, lun uint64) ([]Sense, error) {
	var seen []Sense
	for range 16 {
		res, err := s.TestUnitReady(ctx, lun)
		if err != nil {
			return seen, err
		}
		if !res.UnitAttention() {
			return seen, nil
		}
		seen = append(seen, res.SenseData())
	}
	return seen, fmt.Errorf("initiator: unit attentions keep coming on LUN %d", lun)
}

// ITT returns the command's initiator task tag.
func (p *Pending) ITT() uint32 { return p.res.ITT }

// CmdSN returns the CmdSN the command was sent with.
func (p *Pending) CmdSN() uint32 { return p.res.CmdSN }
