package initiator

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/lunway/lunway/target/pdu"
)

func snLT(a, b uint32) bool { return int32(a-b) < 0 }
func snLE(a, b uint32) bool { return int32(a-b) <= 0 }

// Session is a logged-in iSCSI session (one connection).
type Session struct {
	opts Options
	log  *slog.Logger
	nc   net.Conn
	br   *bufio.Reader
	rd   *pdu.Reader

	isid        [6]byte
	tsih        uint16
	tpgt        uint16
	targetAlias string
	params      pdu.Params
	answers     []pdu.KV

	orderMu sync.Mutex // keeps CmdSN assignment and queueing in order

	// out is the write side after login: PDUs are queued in order and
	// written by the sender that finds no write running, together with
	// whatever others queued meanwhile, in one writev; while corked they
	// wait for Uncork. Commands started together thus share system calls
	// (on loopback each write also runs the receiver's TCP processing).
	out struct {
		sync.Mutex
		cond    *sync.Cond // broadcast when written advances or err is set
		q       net.Buffers
		spare   net.Buffers
		writing bool
		corked  bool
		queued  uint64 // PDUs (or raw writes) queued so far
		written uint64 // of which written
		err     error
	}

	mu struct {
		sync.Mutex
		pending map[uint32]*request
		err     error // set when the session ended
	}
	// CmdSN state, guarded by sn.
	sn        sync.Mutex
	snCond    *sync.Cond
	cmdSN     uint32
	expCmdSN  uint32
	maxCmdSN  uint32
	expStatSN uint32
	itt       uint32

	unsolicited chan *pdu.PDU
	logoutReq   chan struct{}
	logoutOnce  sync.Once
	done        chan struct{}
	readerDone  chan struct{}
}

// request is an outstanding request waiting for its response.
type request struct {
	itt uint32
	// SCSI command state.
	cmd    *Command
	res    *Result
	buf    []byte // data-in buffer
	got    int
	out    []byte // data-out
	lun    [8]byte
	resp   chan *pdu.PDU // non-SCSI responses
	done   chan struct{}
	cb     func(*Result, error) // instead of done, for StartFunc
	err    error
	isSCSI bool
}

// finish hands the request its outcome: its callback, or its done channel.
func (r *request) finish(err error) {
	r.err = err
	if r.cb != nil {
		r.cb(r.res, err)
		return
	}
	close(r.done)
}

// Dial connects to addr (host:port) and logs in. Without TargetName it
// opens a discovery session.
func Dial(ctx context.Context, addr string, opts *Options) (*Session, error) {
	o := opts.withDefaults()
	d := net.Dialer{Timeout: o.DialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	s, err := NewSession(ctx, nc, &o)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return s, nil
}

// NewSession logs in over an established connection. The session owns nc.
func NewSession(ctx context.Context, nc net.Conn, opts *Options) (*Session, error) {
	o := opts.withDefaults()
	s := &Session{opts: o, log: o.Logger, nc: nc, params: pdu.DefaultParams(),
		unsolicited: make(chan *pdu.PDU, 256), logoutReq: make(chan struct{}),
		done: make(chan struct{}), readerDone: make(chan struct{})}
	s.snCond = sync.NewCond(&s.sn)
	s.out.cond = sync.NewCond(&s.out)
	s.mu.pending = make(map[uint32]*request)
	s.isid = o.ISID
	if s.isid == [6]byte{} {
		rand.Read(s.isid[1:])
		s.isid[0] = 0x80 // random type (RFC 7143 11.12.5)
	}
	var rb [4]byte
	rand.Read(rb[:])
	s.cmdSN = uint32(rb[0])<<8 | uint32(rb[1]) | 1
	s.br = bufio.NewReaderSize(nc, 64<<10)
	deadline := time.Now().Add(o.LoginTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) })
	err := s.login()
	stop()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	s.rd = pdu.NewReader(s.br, pdu.Limits{
		MaxDataSegmentLength: s.params.MaxRecvDataSegmentLength,
		HeaderDigest:         s.params.HeaderDigest, DataDigest: s.params.DataDigest,
	})
	go s.readLoop()
	return s, nil
}

// Params returns the negotiated parameters.
func (s *Session) Params() pdu.Params { return s.params }

// TSIH returns the session handle the target assigned.
func (s *Session) TSIH() uint16 { return s.tsih }

// ISID returns the initiator session id.
func (s *Session) ISID() [6]byte { return s.isid }

// PortalGroupTag returns the target portal group tag from login.
func (s *Session) PortalGroupTag() uint16 { return s.tpgt }

// TargetAlias returns the alias the target declared, if any.
func (s *Session) TargetAlias() string { return s.targetAlias }

// LoginAnswers returns every key the target sent during login.
func (s *Session) LoginAnswers() []pdu.KV { return append([]pdu.KV(nil), s.answers...) }

// Done is closed when the session ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns why the session ended, or nil while it runs.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.err
}

// LogoutRequested is closed when the target asked for a logout (Async
// Message event 1).
func (s *Session) LogoutRequested() <-chan struct{} { return s.logoutReq }

// Unsolicited delivers PDUs not matched to a request: Rejects, Async
// Messages, and responses to PDUs sent with WriteRaw. It drops PDUs when
// nobody reads and 256 are queued.
func (s *Session) Unsolicited() <-chan *pdu.PDU { return s.unsolicited }

func (s *Session) nextITT() uint32 {
	s.sn.Lock()
	defer s.sn.Unlock()
	s.itt++
	if s.itt == pdu.ReservedTag {
		s.itt = 1
	}
	return s.itt
}

// NextITT reserves an initiator task tag (for WriteRaw).
func (s *Session) NextITT() uint32 { return s.nextITT() }

// CmdSNs returns the next CmdSN, and the ExpCmdSN and MaxCmdSN last
// received.
func (s *Session) CmdSNs() (next, exp, maxSN uint32) {
	s.sn.Lock()
	defer s.sn.Unlock()
	return s.cmdSN, s.expCmdSN, s.maxCmdSN
}

// TakeCmdSN reserves the next CmdSN for a raw non-immediate PDU.
func (s *Session) TakeCmdSN() uint32 {
	s.sn.Lock()
	defer s.sn.Unlock()
	sn := s.cmdSN
	s.cmdSN++
	return sn
}

// ExpStatSN returns the next StatSN the initiator expects.
func (s *Session) ExpStatSN() uint32 {
	s.sn.Lock()
	defer s.sn.Unlock()
	return s.expStatSN
}

// WriteRaw writes b to the connection as is, between whole PDUs of other
// writers, and returns once it is written. It must not be called while the
// session is corked.
func (s *Session) WriteRaw(b []byte) error {
	seq, err := s.enqueue(b)
	if err != nil {
		return err
	}
	return s.waitWritten(seq)
}

// Cork holds the PDUs of the commands started from now on (and their
// Data-Out) until Uncork writes them all with one system call. An
// event-driven caller corks while it starts the commands of every
// completion it has in hand.
func (s *Session) Cork() {
	s.out.Lock()
	s.out.corked = true
	s.out.Unlock()
}

// Uncork writes what was held since Cork.
func (s *Session) Uncork() {
	s.out.Lock()
	s.out.corked = false
	s.flushLocked()
}

// writePDU encodes one PDU with the session's digests and queues it. The
// caller keeps data unchanged until the PDU's response (or the end of the
// session): it may be written after writePDU returns, by another sender.
func (s *Session) writePDU(b *pdu.BHS, ahs, data []byte) error {
	hdr := pdu.AppendHeader(make([]byte, 0, pdu.BHSLen+len(ahs)+8), b, ahs, len(data), s.params.HeaderDigest)
	if len(data) == 0 {
		_, err := s.enqueue(hdr)
		return err
	}
	_, err := s.enqueue(hdr, data, pdu.AppendDataTrailer(nil, data, s.params.DataDigest))
	return err
}

// enqueue queues the buffers of one PDU (or raw write) and writes the
// queue unless a write is running or the session is corked. It returns the
// PDU's number for waitWritten. A write error ends the session (and with
// it every request waiting for a response).
func (s *Session) enqueue(bufs ...[]byte) (uint64, error) {
	o := &s.out
	o.Lock()
	if o.err != nil {
		err := o.err
		o.Unlock()
		return 0, fmt.Errorf("%w: %v", ErrClosed, err)
	}
	for _, b := range bufs {
		if len(b) > 0 {
			o.q = append(o.q, b)
		}
	}
	o.queued++
	seq := o.queued
	if o.corked {
		o.Unlock()
		return seq, nil
	}
	s.flushLocked()
	return seq, nil
}

// flushLocked writes the queue until it is empty, unless another sender
// is writing it. It is called with out locked and unlocks it.
func (s *Session) flushLocked() {
	o := &s.out
	if o.writing || o.err != nil {
		o.Unlock()
		return
	}
	o.writing = true
	for len(o.q) > 0 {
		batch, upTo := o.q, o.queued
		o.q = o.spare[:0]
		o.Unlock()
		full := batch
		_, err := batch.WriteTo(s.nc)
		clear(full)
		o.Lock()
		o.spare = full[:0]
		if err != nil {
			o.err = err
			o.q = nil
			o.writing = false
			o.cond.Broadcast()
			o.Unlock()
			s.fail(err)
			return
		}
		o.written = upTo
		o.cond.Broadcast()
	}
	o.writing = false
	o.Unlock()
}

// waitWritten waits until the PDU numbered seq is written.
func (s *Session) waitWritten(seq uint64) error {
	o := &s.out
	o.Lock()
	defer o.Unlock()
	for o.written < seq && o.err == nil {
		o.cond.Wait()
	}
	if o.written < seq {
		return fmt.Errorf("%w: %v", ErrClosed, o.err)
	}
	return nil
}

// fail ends the session with err: pending requests fail.
func (s *Session) fail(err error) {
	s.mu.Lock()
	if s.mu.err != nil {
		s.mu.Unlock()
		return
	}
	s.mu.err = err
	pend := s.mu.pending
	s.mu.pending = map[uint32]*request{}
	s.mu.Unlock()
	s.nc.Close()
	for _, r := range pend {
		r.finish(fmt.Errorf("%w: %v", ErrClosed, err))
	}
	s.sn.Lock()
	s.snCond.Broadcast()
	s.sn.Unlock()
	close(s.done)
}

// Close drops the connection without logging out and waits for the reader.
func (s *Session) Close() error {
	s.fail(ErrClosed)
	<-s.readerDone
	return nil
}

func (s *Session) register(r *request) error {
	if r.cb == nil {
		r.done = make(chan struct{})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.err != nil {
		return fmt.Errorf("%w: %v", ErrClosed, s.mu.err)
	}
	s.mu.pending[r.itt] = r
	return nil
}

func (s *Session) lookup(itt uint32) *request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.pending[itt]
}

func (s *Session) complete(r *request, err error) {
	s.mu.Lock()
	if s.mu.pending[r.itt] != r {
		s.mu.Unlock()
		return
	}
	delete(s.mu.pending, r.itt)
	s.mu.Unlock()
	r.finish(err)
}

// forget drops a request whose caller gave up.
func (s *Session) forget(r *request) {
	s.mu.Lock()
	if s.mu.pending[r.itt] == r {
		delete(s.mu.pending, r.itt)
	}
	s.mu.Unlock()
}

// updateSN takes ExpCmdSN/MaxCmdSN/StatSN from a target PDU.
func (s *Session) updateSN(b *pdu.BHS, status bool) {
	exp, maxSN := b.Word(pdu.OffExpCmdSN), b.Word(pdu.OffMaxCmdSN)
	s.sn.Lock()
	if snLE(exp-1, maxSN) { // a valid window (RFC 7143 4.2.2.1)
		if snLT(s.expCmdSN, exp) {
			s.expCmdSN = exp
		}
		if snLT(s.maxCmdSN, maxSN) {
			s.maxCmdSN = maxSN
		}
		s.snCond.Broadcast()
	}
	if status {
		if st := b.Word(pdu.OffStatSN); snLE(s.expStatSN, st) {
			s.expStatSN = st + 1
		}
	}
	s.sn.Unlock()
}

// readLoop reads PDUs and completes requests.
func (s *Session) readLoop() {
	defer close(s.readerDone)
	for {
		p, err := s.readPDU()
		if err != nil {
			s.fail(err)
			return
		}
		if err := s.handle(p); err != nil {
			s.fail(err)
			return
		}
	}
}

// readPDU reads one PDU; Data-In data goes straight to its request buffer.
func (s *Session) readPDU() (*pdu.PDU, error) {
	p := &pdu.PDU{}
	ahs, err := s.rd.ReadHeader(&p.BHS)
	if err != nil {
		return nil, err
	}
	p.AHS = append([]byte(nil), ahs...)
	n := s.rd.Pending()
	if n == 0 {
		return p, nil
	}
	if p.BHS.Opcode() == pdu.OpDataIn {
		var d pdu.DataIn
		if err := d.Decode(&p.BHS); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrProtocol, err)
		}
		if r := s.lookup(d.ITT); r != nil && r.isSCSI {
			end := uint64(d.BufferOffset) + uint64(n)
			if end > uint64(len(r.buf)) {
				return nil, fmt.Errorf("%w: Data-In beyond the expected length (%d > %d)", ErrProtocol, end, len(r.buf))
			}
			if err := s.rd.ReadData(r.buf[d.BufferOffset:end]); err != nil {
				return nil, err
			}
			if int(end) > r.got {
				r.got = int(end)
			}
			return p, nil
		}
	}
	p.Data = make([]byte, n)
	if err := s.rd.ReadData(p.Data); err != nil {
		return nil, err
	}
	return p, nil
}

func (s *Session) deliverUnsolicited(p *pdu.PDU) {
	select {
	case s.unsolicited <- p:
	default:
		s.log.Debug("unsolicited PDU dropped", "opcode", p.BHS.Opcode())
	}
}

func (s *Session) handle(p *pdu.PDU) error {
	b := &p.BHS
	op := b.Opcode()
	switch op {
	case pdu.OpDataIn:
		var d pdu.DataIn
		d.Decode(b)
		s.updateSN(b, d.HasStatus)
		r := s.lookup(d.ITT)
		if r == nil || !r.isSCSI {
			s.deliverUnsolicited(p)
			return nil
		}
		if d.HasStatus {
			r.res.Status = d.Status
			r.res.Overflow, r.res.Underflow, r.res.Residual = d.Overflow, d.Underflow, d.ResidualCount
			r.res.Data = r.buf[:r.got]
			s.complete(r, nil)
		}
		return nil
	case pdu.OpSCSIResponse:
		var sr pdu.SCSIResponse
		if err := sr.Decode(b); err != nil {
			return fmt.Errorf("%w: %v", ErrProtocol, err)
		}
		s.updateSN(b, true)
		r := s.lookup(sr.ITT)
		if r == nil || !r.isSCSI {
			s.deliverUnsolicited(p)
			return nil
		}
		r.res.Status, r.res.Response = sr.Status, sr.Response
		r.res.Overflow, r.res.Underflow, r.res.Residual = sr.Overflow, sr.Underflow, sr.ResidualCount
		if len(p.Data) >= 2 {
			n := int(p.Data[0])<<8 | int(p.Data[1])
			if n > len(p.Data)-2 {
				n = len(p.Data) - 2
			}
			r.res.Sense = append([]byte(nil), p.Data[2:2+n]...)
		}
		r.res.Data = r.buf[:r.got]
		s.complete(r, nil)
		return nil
	case pdu.OpR2T:
		var t pdu.R2T
		if err := t.Decode(b); err != nil {
			return fmt.Errorf("%w: %v", ErrProtocol, err)
		}
		s.updateSN(b, false)
		r := s.lookup(t.ITT)
		if r == nil || !r.isSCSI {
			s.deliverUnsolicited(p)
			return nil
		}
		return s.sendData(r, t.TTT, t.BufferOffset, t.DesiredDataTransferLength)
	case pdu.OpNOPIn:
		var n pdu.NOPIn
		n.Decode(b)
		if n.ITT == pdu.ReservedTag {
			s.updateSN(b, false)
			if n.TTT != pdu.ReservedTag && !s.opts.IgnoreNopIn {
				// A ping from the target: answer it.
				s.sn.Lock()
				sn := s.cmdSN
				exp := s.expStatSN
				s.sn.Unlock()
				var h pdu.BHS
				(&pdu.NOPOut{Immediate: true, LUN: n.LUN, ITT: pdu.ReservedTag, TTT: n.TTT,
					CmdSN: sn, ExpStatSN: exp}).Encode(&h)
				return s.writePDU(&h, nil, p.Data)
			}
			return nil
		}
		s.updateSN(b, true)
	case pdu.OpAsyncMessage:
		var m pdu.AsyncMessage
		m.Decode(b)
		s.updateSN(b, true)
		if m.AsyncEvent == pdu.AsyncLogoutRequest {
			s.logoutOnce.Do(func() { close(s.logoutReq) })
		}
		s.deliverUnsolicited(p)
		return nil
	case pdu.OpReject:
		s.updateSN(b, true)
		var rj pdu.Reject
		rj.Decode(b)
		if len(p.Data) >= pdu.BHSLen {
			rejected := pdu.BHS(p.Data[:pdu.BHSLen])
			if r := s.lookup(rejected.ITT()); r != nil && rejected.ITT() != pdu.ReservedTag {
				s.complete(r, &RejectError{Reason: rj.Reason})
			}
		}
		s.deliverUnsolicited(p)
		return nil
	case pdu.OpTaskMgmtResp, pdu.OpTextResp, pdu.OpLogoutResp:
		s.updateSN(b, true)
	default:
		s.updateSN(b, true)
		s.deliverUnsolicited(p)
		return nil
	}
	r := s.lookup(b.ITT())
	if r == nil || r.isSCSI {
		s.deliverUnsolicited(p)
		return nil
	}
	r.resp <- p
	s.complete(r, nil)
	return nil
}

// waitWindow blocks until CmdSN sn may be sent (sn <= MaxCmdSN).
func (s *Session) waitWindowLocked(ctx context.Context) error {
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() {
			s.sn.Lock()
			s.snCond.Broadcast()
			s.sn.Unlock()
		})
		defer stop()
	}
	for !snLE(s.cmdSN, s.maxCmdSN) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.Err(); err != nil {
			return fmt.Errorf("%w: %v", ErrClosed, err)
		}
		s.snCond.Wait()
	}
	return nil
}

// send assigns a CmdSN (non-immediate PDUs wait for the window) and writes
// the PDU. The CmdSN field is at offset 24 in every initiator request that
// carries one; ExpStatSN at 28.
// When cmdSN is not nil it receives the CmdSN before the PDU is written
// (its response may arrive before send returns).
func (s *Session) send(ctx context.Context, b *pdu.BHS, ahs, data []byte, cmdSN *uint32, after func() error) error {
	s.orderMu.Lock()
	defer s.orderMu.Unlock()
	s.sn.Lock()
	if !b.Immediate() {
		if err := s.waitWindowLocked(ctx); err != nil {
			s.sn.Unlock()
			return err
		}
	}
	b.SetWord(24, s.cmdSN)
	b.SetWord(28, s.expStatSN)
	if cmdSN != nil {
		*cmdSN = s.cmdSN
	}
	if !b.Immediate() {
		s.cmdSN++
	}
	s.sn.Unlock()
	// orderMu is held while queueing so that CmdSNs go out in order.
	err := s.writePDU(b, ahs, data)
	if err == nil && after != nil {
		err = after()
	}
	return err
}

// roundTrip sends a non-SCSI request and waits for its response PDU.
func (s *Session) roundTrip(ctx context.Context, b *pdu.BHS, data []byte) (*pdu.PDU, error) {
	r := &request{itt: b.ITT(), resp: make(chan *pdu.PDU, 1)}
	if err := s.register(r); err != nil {
		return nil, err
	}
	if err := s.send(ctx, b, nil, data, nil, nil); err != nil {
		s.forget(r)
		return nil, err
	}
	select {
	case <-r.done:
		if r.err != nil {
			return nil, r.err
		}
		return <-r.resp, nil
	case <-ctx.Done():
		s.forget(r)
		return nil, ctx.Err()
	}
}

// Nop sends a NOP-Out ping and waits for the NOP-In echo.
func (s *Session) Nop(ctx context.Context, data []byte) ([]byte, error) {
	var b pdu.BHS
	(&pdu.NOPOut{Immediate: true, ITT: s.nextITT(), TTT: pdu.ReservedTag}).Encode(&b)
	p, err := s.roundTrip(ctx, &b, data)
	if err != nil {
		return nil, err
	}
	if p.BHS.Opcode() != pdu.OpNOPIn {
		return nil, fmt.Errorf("%w: %v in answer to NOP-Out", ErrProtocol, p.BHS.Opcode())
	}
	return p.Data, nil
}

// Logout logs the session out (reason close session) and closes it.
func (s *Session) Logout(ctx context.Context) error {
	var b pdu.BHS
	(&pdu.LogoutRequest{Immediate: true, ReasonCode: pdu.LogoutCloseSession, ITT: s.nextITT()}).Encode(&b)
	p, err := s.roundTrip(ctx, &b, nil)
	if err != nil {
		s.Close()
		return err
	}
	var lr pdu.LogoutResponse
	if err := lr.Decode(&p.BHS); err != nil {
		s.Close()
		return fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	s.Close()
	if lr.Response != pdu.LogoutRespSuccess {
		return fmt.Errorf("%w: logout response %d", ErrProtocol, lr.Response)
	}
	return nil
}

// Target is one SendTargets entry.
type Target struct {
	Name      string
	Addresses []string // "host:port,tpgt"
}

// SendTargets asks for targets ("All" in discovery sessions, a target name,
// or "" for the session's own target).
func (s *Session) SendTargets(ctx context.Context, value string) ([]Target, error) {
	text := pdu.AppendText(nil, pdu.KV{Key: "SendTargets", Value: value})
	itt := s.nextITT()
	ttt := pdu.ReservedTag
	var all []byte
	for {
		var b pdu.BHS
		(&pdu.TextRequest{Immediate: true, Final: true, ITT: itt, TTT: ttt}).Encode(&b)
		p, err := s.roundTrip(ctx, &b, text)
		if err != nil {
			return nil, err
		}
		var tr pdu.TextResponse
		if err := tr.Decode(&p.BHS); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrProtocol, err)
		}
		all = append(all, p.Data...)
		if len(all) > 4<<20 {
			return nil, fmt.Errorf("%w: SendTargets answer too long", ErrProtocol)
		}
		if !tr.Continue {
			break
		}
		ttt, text = tr.TTT, nil
	}
	kvs, err := parseTargets(all)
	if err != nil {
		return nil, err
	}
	return kvs, nil
}

// parseTargets parses a SendTargets answer, where TargetName repeats.
func parseTargets(text []byte) ([]Target, error) {
	var out []Target
	for len(text) > 0 {
		i := 0
		for i < len(text) && text[i] != 0 {
			i++
		}
		pair := text[:i]
		if i < len(text) {
			i++
		}
		text = text[i:]
		if len(pair) == 0 {
			continue
		}
		kvs, err := pdu.ParseText(append(pair, 0))
		if err != nil || len(kvs) != 1 {
			return nil, fmt.Errorf("%w: SendTargets text: %v", ErrProtocol, err)
		}
		switch kvs[0].Key {
		case "TargetName":
			out = append(out, Target{Name: kvs[0].Value})
		case "TargetAddress":
			if len(out) == 0 {
				return nil, fmt.Errorf("%w: TargetAddress before TargetName", ErrProtocol)
			}
			out[len(out)-1].Addresses = append(out[len(out)-1].Addresses, kvs[0].Value)
		case "SendTargets":
			return nil, fmt.Errorf("%w: SendTargets=%s", ErrNegotiation, kvs[0].Value)
		}
	}
	return out, nil
}

// Discover opens a discovery session to addr, asks SendTargets=All and
// logs out.
func Discover(ctx context.Context, addr string, opts *Options) ([]Target, error) {
	o := opts.withDefaults()
	o.TargetName = ""
	s, err := Dial(ctx, addr, &o)
	if err != nil {
		return nil, err
	}
	ts, err := s.SendTargets(ctx, "All")
	if lerr := s.Logout(ctx); err == nil && lerr != nil && !errors.Is(lerr, ErrClosed) {
		err = lerr
	}
	return ts, err
}
