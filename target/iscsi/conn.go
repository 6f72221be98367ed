package iscsi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lunway/lunway/target/pdu"
	"github.com/lunway/lunway/target/scsi"
)

// session is the per-session state of a connection (one connection per
// session: MaxConnections=1).
type session struct {
	id            uint64
	tsih          uint16
	isid          [6]byte
	initiatorName string
	discovery     bool
	nexus         *scsi.Nexus
	start         time.Time
}

// outPDU is one PDU queued for the writer. The writer stamps the sequence
// numbers as the PDU leaves, so that StatSN follows wire order and
// MaxCmdSN is as fresh as possible.
type outPDU struct {
	bhs  pdu.BHS
	data []byte
	// advanceStatSN: the PDU carries a new StatSN (a status); otherwise
	// the StatSN field is the next StatSN, not advanced (R2T, NOP-In ping).
	advanceStatSN bool
	// noStatSN: the StatSN field is reserved (Data-In without status).
	noStatSN bool
	// done runs after the PDU was written or dropped.
	done func()
	// res, when hasRes, is released after the PDU was written or dropped
	// (the last PDU of a command's response).
	res    scsi.Result
	hasRes bool
}

// conn is one iSCSI connection and, after login, its session.
type conn struct {
	srv    *Server
	nc     net.Conn
	tpgt   uint16
	log    *slog.Logger
	remote netip.AddrPort
	local  netip.AddrPort
	br     *bufio.Reader
	rd     *pdu.Reader

	// ctx is the parent of the session's tasks; cancel ends the connection.
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{} // closed when serve returns

	// Set by login, then read-only.
	sess   *session
	target atomic.Pointer[targetEntry]
	params pdu.Params
	cid    uint16

	stats counters

	// CmdSN window. expCmdSN is written by the reader, read by the writer;
	// maxCmdSN is written by the writer, read by the reader.
	expCmdSN atomic.Uint32
	maxCmdSN atomic.Uint32
	inflight atomic.Int32
	deferred map[uint32]orderedItem // reader-owned: commands ahead of ExpCmdSN

	tmu struct {
		sync.Mutex
		tasks map[uint32]*cmdTask // tasks waiting for Data-Out, by ITT
	}
	nextTTT uint32 // reader-owned

	taskWG sync.WaitGroup // executing tasks and TMF goroutines
	bgWG   sync.WaitGroup // keepalive goroutine

	lastRecv atomic.Int64 // unix nanos of the last PDU received
	pingTTT  atomic.Uint32
	pingSent atomic.Int64 // unix nanos of the outstanding ping, 0 when none

	text textState // reader-owned

	out struct {
		sync.Mutex
		q       []*outPDU
		closed  bool
		flushed bool // writer stopped after flushing
	}
	wake       chan struct{}
	writerDone chan struct{}
	statSN     uint32 // writer-owned after login

	draining      atomic.Bool
	logoutAsked   atomic.Bool
	inFullFeature atomic.Bool
}

func newConn(s *Server, nc net.Conn, tpgt uint16) *conn {
	c := &conn{srv: s, nc: nc, tpgt: tpgt, done: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancelCause(s.ctx)
	c.remote, _ = netip.ParseAddrPort(nc.RemoteAddr().String())
	c.local, _ = netip.ParseAddrPort(nc.LocalAddr().String())
	c.log = s.log.With("remote", nc.RemoteAddr().String())
	c.br = bufio.NewReaderSize(nc, 64<<10)
	// Login PDUs carry no AHS: a tiny cap drops garbage at once.
	c.rd = pdu.NewReader(c.br, pdu.Limits{MaxDataSegmentLength: loginMaxData, MaxAHSLength: 4})
	c.tmu.tasks = make(map[uint32]*cmdTask)
	c.deferred = make(map[uint32]orderedItem)
	c.wake = make(chan struct{}, 1)
	c.writerDone = make(chan struct{})
	return c
}

func (c *conn) targetEntry() *targetEntry { return c.target.Load() }

// abort ends the connection now: tasks are aborted, nothing more is sent.
func (c *conn) abort(cause error) {
	c.cancel(cause)
	c.nc.SetDeadline(time.Now())
}

// drain stops reading new requests, lets in-flight commands finish and
// their responses go out, then ends the connection (Shutdown's last step).
func (c *conn) drain() {
	c.draining.Store(true)
	c.nc.SetReadDeadline(time.Now())
}

// requestLogout asks the initiator to log out (Async Message, event 1).
func (c *conn) requestLogout() {
	if !c.inFullFeature.Load() || c.sess.discovery {
		c.drain()
		return
	}
	if c.logoutAsked.Swap(true) {
		return
	}
	p := c.newOut()
	secs := max(int(c.srv.opts.LogoutWait/time.Second), 1)
	(&pdu.AsyncMessage{AsyncEvent: pdu.AsyncLogoutRequest, Parameter3: uint16(secs)}).Encode(&p.bhs)
	p.advanceStatSN = true
	c.queue(p)
}

func (c *conn) serve() {
	defer close(c.done)
	defer c.srv.connEnded(c)
	defer c.nc.Close()
	err := c.login()
	if err != nil {
		if !errors.Is(err, io.EOF) {
			c.log.Debug("login ended", "err", err)
		}
		c.cancel(err)
		return
	}
	c.inFullFeature.Store(true)
	c.log = c.log.With("session", c.sess.id, "initiator", c.sess.initiatorName)
	go c.writeLoop()
	if c.srv.opts.NopInterval > 0 {
		c.bgWG.Add(1)
		go c.keepalive()
	}
	if c.srv.shutdown.Load() {
		c.requestLogout()
	}
	err = c.readLoop()
	graceful := errors.Is(err, errLogout) || c.draining.Load() && c.ctx.Err() == nil
	if !graceful {
		c.cancel(err)
	}
	// Tasks waiting for Data-Out can no longer get it.
	c.abortWaiting()
	if graceful {
		c.taskWG.Wait()
		c.closeWriter(true)
	} else {
		if t := c.targetEntry(); t != nil {
			t.cfg.SCSI.NexusLost(c.sess.nexus)
		}
		c.closeWriter(false)
		c.taskWG.Wait()
	}
	<-c.writerDone
	c.cancel(errSessionEnded)
	if t := c.targetEntry(); t != nil && graceful {
		t.cfg.SCSI.NexusLost(c.sess.nexus)
	}
	c.bgWG.Wait()
	lvl := slog.LevelInfo
	if !graceful && !errors.Is(err, io.EOF) {
		lvl = slog.LevelWarn
	}
	cause := context.Cause(c.ctx)
	if err != nil && !errors.Is(err, errLogout) {
		cause = err
	}
	c.log.Log(context.Background(), lvl, "session ended", "cause", cause)
}

// newOut returns a zeroed outPDU from the server's pool.
func (c *conn) newOut() *outPDU {
	p := c.srv.outPool.Get().(*outPDU)
	*p = outPDU{}
	return p
}

// queue hands PDUs to the writer. After the writer stopped, their done
// functions run at once.
func (c *conn) queue(ps ...*outPDU) {
	c.out.Lock()
	if c.out.closed {
		c.out.Unlock()
		for _, p := range ps {
			c.finish(p)
		}
		return
	}
	c.out.q = append(c.out.q, ps...)
	n := len(c.out.q)
	c.out.Unlock()
	if n > maxQueued {
		// The initiator keeps sending (immediate NOP-Outs, say) and does
		// not read what we answer.
		c.abort(errors.New("iscsi: initiator does not read its responses"))
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *conn) finish(p *outPDU) {
	if p.done != nil {
		p.done()
	}
	if p.hasRes {
		p.res.Release()
	}
	*p = outPDU{}
	c.srv.outPool.Put(p)
}

// closeWriter stops the writer, after writing what is queued when flush.
func (c *conn) closeWriter(flush bool) {
	c.out.Lock()
	c.out.closed = true
	c.out.flushed = flush
	c.out.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// maxQueued caps the PDUs waiting for the writer.
const maxQueued = 1 << 16

// maxBatchBytes bounds one writev.
const maxBatchBytes = 4 << 20

// writeLoop is the connection's only writer after login. It takes every
// queued PDU, stamps sequence numbers, encodes the headers into one buffer
// and writes headers and data with one writev (net.Buffers).
func (c *conn) writeLoop() {
	defer close(c.writerDone)
	var (
		batch []*outPDU
		hdr   []byte
		spans []int // per PDU: end offset in hdr of its header, then of its trailer
		bufs  net.Buffers
		iov   [][]byte
	)
	hd, dd := c.params.HeaderDigest, c.params.DataDigest
	depth := uint32(c.srv.opts.QueueDepth)
	failed := false
	for {
		c.out.Lock()
		for len(c.out.q) == 0 && !c.out.closed {
			c.out.Unlock()
			<-c.wake
			c.out.Lock()
		}
		closed, flush := c.out.closed, c.out.flushed
		batch, c.out.q = c.out.q, batch[:0]
		c.out.Unlock()
		if closed && (!flush || failed || len(batch) == 0) {
			for _, p := range batch {
				c.finish(p)
			}
			c.out.Lock()
			rest := c.out.q
			c.out.q = nil
			c.out.Unlock()
			for _, p := range rest {
				c.finish(p)
			}
			return
		}
		for start := 0; start < len(batch); {
			hdr, spans, iov = hdr[:0], spans[:0], iov[:0]
			end, size := start, 0
			for ; end < len(batch) && (end == start || size < maxBatchBytes); end++ {
				p := batch[end]
				c.stamp(p, depth)
				hdr = pdu.AppendHeader(hdr, &p.bhs, nil, len(p.data), hd)
				spans = append(spans, len(hdr))
				if len(p.data) > 0 && len(p.data) <= 256 {
					hdr = append(hdr, p.data...) // small data: copy, one iovec fewer
				}
				hdr = pdu.AppendDataTrailer(hdr, p.data, dd)
				spans = append(spans, len(hdr))
				size += pdu.BHSLen + len(p.data)
			}
			off := 0
			for i := start; i < end; i++ {
				p := batch[i]
				h, t := spans[2*(i-start)], spans[2*(i-start)+1]
				if len(p.data) > 256 {
					iov = append(iov, hdr[off:h], p.data, hdr[h:t])
				} else {
					iov = append(iov, hdr[off:t])
				}
				off = t
			}
			if !failed {
				c.nc.SetWriteDeadline(time.Now().Add(c.srv.opts.WriteTimeout))
				bufs = net.Buffers(iov)
				n, err := bufs.WriteTo(c.nc)
				c.stats.bytesOut.Add(uint64(n))
				c.stats.pdusOut.Add(uint64(end - start))
				if err != nil {
					failed = true
					c.abort(fmt.Errorf("write: %w", err))
				}
			}
			for i := start; i < end; i++ {
				c.finish(batch[i])
				batch[i] = nil
			}
			start = end
		}
		clear(iov)
	}
}

// stamp fills the StatSN, ExpCmdSN and MaxCmdSN fields of a target PDU.
func (c *conn) stamp(p *outPDU, depth uint32) {
	b := &p.bhs
	if !p.noStatSN {
		b.SetWord(pdu.OffStatSN, c.statSN)
		if p.advanceStatSN {
			c.statSN++
		}
	}
	exp := c.expCmdSN.Load()
	inflight := uint32(max(c.inflight.Load(), 0))
	maxSN := exp + depth - 1 - min(inflight, depth)
	if last := c.maxCmdSN.Load(); int32(maxSN-last) < 0 {
		maxSN = last // never shrink the window
	}
	c.maxCmdSN.Store(maxSN)
	b.SetWord(pdu.OffExpCmdSN, exp)
	b.SetWord(pdu.OffMaxCmdSN, maxSN)
}

// keepalive pings an idle initiator with NOP-In and ends the connection
// when it does not answer within NopTimeout.
func (c *conn) keepalive() {
	defer c.bgWG.Done()
	interval, timeout := c.srv.opts.NopInterval, c.srv.opts.NopTimeout
	tick := max(min(interval, timeout)/4, 5*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.writerDone:
			return
		case now := <-t.C:
			last := time.Unix(0, c.lastRecv.Load())
			if sent := c.pingSent.Load(); sent != 0 {
				if last.UnixNano() >= sent {
					c.pingSent.Store(0)
				} else if now.Sub(time.Unix(0, sent)) >= timeout {
					c.log.Warn("initiator does not answer NOP-In; dropping connection", "timeout", timeout)
					c.abort(errNopTimeout)
					return
				}
				continue
			}
			if now.Sub(last) >= interval {
				ttt := c.pingTTT.Add(1)
				if ttt == pdu.ReservedTag {
					ttt = c.pingTTT.Add(1)
				}
				c.pingSent.Store(now.UnixNano())
				p := c.newOut()
				(&pdu.NOPIn{ITT: pdu.ReservedTag, TTT: ttt, LUN: [8]byte{}}).Encode(&p.bhs)
				c.queue(p)
			}
		}
	}
}

func (c *conn) info() SessionInfo {
	si := SessionInfo{
		ID: c.sess.id, InitiatorName: c.sess.initiatorName, ISID: c.sess.isid, TSIH: c.sess.tsih,
		Discovery: c.sess.discovery, PortalGroup: c.tpgt, RemoteAddr: c.nc.RemoteAddr().String(),
		LocalAddr: c.nc.LocalAddr().String(), Params: c.params, Start: c.sess.start,
		InFlight: int(max(c.inflight.Load(), 0)),
	}
	if t := c.targetEntry(); t != nil {
		si.Target = t.cfg.Name
	}
	return si
}
