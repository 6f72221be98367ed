package iscsi

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/target/initiator"
	"github.com/lunway/lunway/target/pdu"
)

// closeTimeout bounds the flush and logout of Close.
const closeTimeout = 30 * time.Second

// Device is a blockdev.Device on one logical unit of an iSCSI target. Open
// returns it wrapped in a type that implements exactly the optional
// capabilities the target advertises.
type Device struct {
	t     Target
	o     Options
	log   *slog.Logger
	login initiator.Options

	// Fixed at Open.
	feat     features
	readOnly bool
	maxXfer  int64  // bytes per READ or WRITE command
	zero     []byte // one zero block, the data of WRITE SAME

	info atomic.Pointer[blockdev.Info]

	// inflight counts calls between begin and end; Close waits for them.
	inflight sync.WaitGroup

	mu struct {
		sync.Mutex
		s       *initiator.Session // nil while disconnected
		gen     uint64             // incremented by every new session
		dialing chan struct{}      // closed when the running (re)connect ends
		dialErr error              // how the last (re)connect failed
		closed  bool
		// acked counts volatile writes (no FUA) the target acknowledged;
		// flushed is the part of that count a completed SYNCHRONIZE CACHE
		// covers. A connection lost while acked > flushed sets lost.
		acked, flushed uint64
		lost           bool
	}
}

// features are the capabilities found at Open.
type features struct {
	unmap      bool   // UNMAP, reading zeros afterwards
	writeSame  bool   // WRITE SAME (16)
	wsUnmap    bool   // WRITE SAME (16) with the UNMAP bit, reading zeros afterwards
	lbaStatus  bool   // GET LBA STATUS
	unmapMax   uint64 // blocks per UNMAP command
	wsMax      uint64 // blocks per WRITE SAME command
	provThin   bool   // the target calls the LU thin provisioned
	writeProt  bool   // the target reports write protection (WP)
	maxXferBlk uint32 // the target's MAXIMUM TRANSFER LENGTH, 0 for none
}

// Open logs in to the target, inspects the logical unit (READ CAPACITY,
// the block limits and provisioning VPD pages, MODE SENSE, REPORT
// SUPPORTED OPERATION CODES for WRITE SAME) and returns a Device. The
// returned value implements blockdev.Unmapper when the target supports
// UNMAP with zeros after it (LBPU and LBPRZ), blockdev.ZeroWriter when it
// supports WRITE SAME (16), and blockdev.AllocationStatuser when it
// answers GET LBA STATUS; Info().Thin is set when it has both Unmap and
// AllocationStatus. Open does not retry a failed login.
func Open(ctx context.Context, t Target, opts *Options) (blockdev.Device, error) {
	d, err := open(ctx, t, opts)
	if err != nil {
		return nil, err
	}
	return d.wrap(), nil
}

func open(ctx context.Context, t Target, opts *Options) (*Device, error) {
	o := opts.withDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if t.Addr == "" || t.IQN == "" || len(t.IQN) > MaxNameLen || t.LUN > 16383 {
		return nil, fmt.Errorf("%w: target %q", ErrURL, t.String())
	}
	login := o.Initiator
	login.TargetName = t.IQN
	if login.ISID == [6]byte{} {
		// One ISID for the Device's life: a reconnect then reinstates
		// the session (RFC 7143 6.3.5), which ends the old one at once.
		if _, err := rand.Read(login.ISID[1:]); err != nil {
			return nil, err
		}
		login.ISID[0] = 0x80
	}
	if login.CHAP == nil && t.User != "" {
		login.CHAP = &initiator.CHAP{User: t.User, Secret: t.Secret}
	}
	if login.Logger == nil {
		login.Logger = o.Logger
	}
	d := &Device{t: t, o: o, log: o.Logger.With("target", t.String()), login: login}
	s, err := initiator.Dial(ctx, t.Addr, &d.login)
	if err != nil {
		return nil, fmt.Errorf("iscsi: login to %s: %w", t, err)
	}
	d.mu.s, d.mu.gen = s, 1
	if err := d.probe(ctx); err != nil {
		d.mu.s = nil
		lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.Logout(lctx)
		cancel()
		return nil, fmt.Errorf("iscsi: %s: %w", t, err)
	}
	return d, nil
}

// probe reads the logical unit's geometry and capabilities.
func (d *Device) probe(ctx context.Context) error {
	res, _, err := d.exec(ctx, inquiryCmd(d.t.LUN, false, 0, 96))
	if err != nil {
		return fmt.Errorf("INQUIRY: %w", err)
	}
	inq, err := parseInquiry(res.Data)
	if err != nil {
		return err
	}
	switch {
	case inq.qualifier != 0:
		return fmt.Errorf("%w: LUN %d (peripheral qualifier %d)", ErrNoLUN, d.t.LUN, inq.qualifier)
	case inq.deviceType != 0:
		return fmt.Errorf("%w: LUN %d is SCSI device type 0x%02x, not a block device", ErrUnsupported, d.t.LUN, inq.deviceType)
	}
	c, err := d.readCapacity(ctx, d.exec)
	if err != nil {
		return err
	}
	var lim limits
	var prov provisioning
	if res, _, err := d.exec(ctx, inquiryCmd(d.t.LUN, true, 0x00, 255)); err == nil {
		pages, _ := parseSupportedVPD(res.Data)
		if pages[0xb0] {
			if res, _, err := d.exec(ctx, inquiryCmd(d.t.LUN, true, 0xb0, 64)); err == nil {
				if lim, err = parseBlockLimits(res.Data); err != nil {
					return err
				}
			}
		}
		if pages[0xb2] {
			if res, _, err := d.exec(ctx, inquiryCmd(d.t.LUN, true, 0xb2, 64)); err == nil {
				if prov, err = parseProvisioning(res.Data); err != nil {
					return err
				}
			}
		}
	} else if ctx.Err() != nil {
		return ctx.Err()
	}
	if res, _, err := d.exec(ctx, &initiator.Command{LUN: d.t.LUN, CDB: []byte{0x1a, 0x08, 0x3f, 0, 255, 0}, Read: true, ExpectedLen: 255}); err == nil {
		d.feat.writeProt, _ = parseModeSense6WP(res.Data)
	}
	bs := uint64(c.blockSize)
	f := &d.feat
	f.provThin = prov.thin
	f.maxXferBlk = lim.maxTransfer
	lbprz := c.lbprz || prov.lbprz
	f.unmap = c.lbpme && prov.lbpu && lbprz && lim.maxUnmapLBAs > 0 && lim.maxUnmapDescs > 0
	f.unmapMax = min(uint64(lim.maxUnmapLBAs), 0xffffffff)
	f.wsUnmap = c.lbpme && prov.lbpws && lbprz
	f.writeSame = prov.lbpws
	if !f.writeSame {
		// REPORT SUPPORTED OPERATION CODES, one command: WRITE SAME (16).
		cdb := []byte{0xa3, 0x0c, 0x01, 0x93, 0, 0, 0, 0, 0, 64, 0, 0}
		if res, _, err := d.exec(ctx, &initiator.Command{LUN: d.t.LUN, CDB: cdb, Read: true, ExpectedLen: 64}); err == nil {
			f.writeSame, _ = parseOneCommand(res.Data)
		}
	}
	// WRITE SAME without a reported maximum: 256 MiB per command, so that
	// one command that writes zeros does not run for minutes.
	f.wsMax = min(uint64(256<<20)/bs, 0xffffffff)
	if lim.maxWriteSame > 0 {
		f.wsMax = min(lim.maxWriteSame, 0xffffffff)
	}
	// GET LBA STATUS's "deallocated" promises zeros only with LBPRZ; the
	// blockdev contract reads a deallocated extent as zeros, so without
	// LBPRZ the device reports no allocation at all.
	if c.lbpme && lbprz {
		_, _, err := d.exec(ctx, lbaStatusCmd(d.t.LUN, 0, 24))
		f.lbaStatus = err == nil
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	d.maxXfer = int64(d.o.MaxTransferBytes) / int64(bs) * int64(bs)
	if lim.maxTransfer > 0 {
		d.maxXfer = min(d.maxXfer, int64(lim.maxTransfer)*int64(bs))
	}
	d.maxXfer = max(d.maxXfer, int64(bs))
	d.zero = make([]byte, bs)
	d.readOnly = d.o.ReadOnly || f.writeProt
	info := blockdev.Info{
		SizeBytes:         int64(c.blocks) * int64(bs),
		LogicalBlockSize:  int(bs),
		PhysicalBlockSize: int(bs) << c.physExp,
		Thin:              f.unmap && f.lbaStatus,
		ReadOnly:          d.readOnly,
	}
	d.info.Store(&info)
	d.log.Debug("iscsi: LU opened", "size", info.SizeBytes, "block", bs, "unmap", f.unmap,
		"write_same", f.writeSame, "ws_unmap", f.wsUnmap, "lba_status", f.lbaStatus, "max_transfer", d.maxXfer)
	return nil
}

// execFunc runs a command: Device.exec, or a direct call on one session.
type execFunc func(ctx context.Context, cmd *initiator.Command) (*initiator.Result, uint64, error)

// readCapacity sends READ CAPACITY (16), or (10) when the target does not
// know (16).
func (d *Device) readCapacity(ctx context.Context, run execFunc) (capacity, error) {
	cdb := make([]byte, 16)
	cdb[0], cdb[1] = 0x9e, 0x10
	binary.BigEndian.PutUint32(cdb[10:], 32)
	res, _, err := run(ctx, &initiator.Command{LUN: d.t.LUN, CDB: cdb, Read: true, ExpectedLen: 32})
	if err == nil {
		return parseCapacity16(res.Data)
	}
	if !errors.Is(err, blockdev.ErrNotSupported) {
		return capacity{}, fmt.Errorf("READ CAPACITY (16): %w", err)
	}
	cdb10 := []byte{0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	res, _, err = run(ctx, &initiator.Command{LUN: d.t.LUN, CDB: cdb10, Read: true, ExpectedLen: 8})
	if err != nil {
		return capacity{}, fmt.Errorf("READ CAPACITY (10): %w", err)
	}
	return parseCapacity10(res.Data)
}

func inquiryCmd(lun uint64, evpd bool, page uint8, alloc uint16) *initiator.Command {
	cdb := []byte{0x12, 0, page, byte(alloc >> 8), byte(alloc), 0}
	if evpd {
		cdb[1] = 1
	}
	return &initiator.Command{LUN: lun, CDB: cdb, Read: true, ExpectedLen: uint32(alloc)}
}

func lbaStatusCmd(lun, lba uint64, alloc uint32) *initiator.Command {
	cdb := make([]byte, 16)
	cdb[0], cdb[1] = 0x9e, 0x12
	binary.BigEndian.PutUint64(cdb[2:], lba)
	binary.BigEndian.PutUint32(cdb[10:], alloc)
	return &initiator.Command{LUN: lun, CDB: cdb, Read: true, ExpectedLen: alloc}
}

// Info implements blockdev.Device. The size follows the target: a
// CAPACITY DATA HAS CHANGED unit attention makes the Device read it again.
func (d *Device) Info() blockdev.Info { return *d.info.Load() }

// Target returns the target the Device is logged in to.
func (d *Device) Target() Target { return d.t }

// begin registers a call; Close waits for registered calls.
func (d *Device) begin() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mu.closed {
		return blockdev.ErrClosed
	}
	d.inflight.Add(1)
	return nil
}

func (d *Device) end() { d.inflight.Done() }

// session returns the current session, connecting again when it was lost.
// One caller reconnects; the others wait for it.
func (d *Device) session(ctx context.Context) (*initiator.Session, uint64, error) {
	for {
		d.mu.Lock()
		if s := d.mu.s; s != nil {
			gen := d.mu.gen
			d.mu.Unlock()
			return s, gen, nil
		}
		if ch := d.mu.dialing; ch != nil {
			d.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return nil, 0, ctx.Err()
			}
			d.mu.Lock()
			ok, err := d.mu.s != nil, d.mu.dialErr
			d.mu.Unlock()
			if !ok && err != nil && !isContextErr(err) {
				return nil, 0, err
			}
			continue
		}
		ch := make(chan struct{})
		d.mu.dialing = ch
		d.mu.Unlock()
		s, err := d.redial(ctx)
		d.mu.Lock()
		d.mu.dialing, d.mu.dialErr = nil, err
		if err == nil {
			d.mu.s = s
			d.mu.gen++
		}
		gen := d.mu.gen
		d.mu.Unlock()
		close(ch)
		if err != nil {
			return nil, 0, err
		}
		return s, gen, nil
	}
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// redial logs in again, up to ReconnectAttempts times.
func (d *Device) redial(ctx context.Context) (*initiator.Session, error) {
	if d.o.ReconnectAttempts == 0 {
		return nil, fmt.Errorf("%w: %s: connection lost (reconnecting is disabled)", blockdev.ErrUnavailable, d.t)
	}
	backoff := d.o.ReconnectBackoff
	var last error
	n := 0
	for n < d.o.ReconnectAttempts {
		if n > 0 {
			if err := sleep(ctx, backoff); err != nil {
				return nil, err
			}
			backoff = min(2*backoff, maxReconnectBackoff)
		}
		n++
		s, err := initiator.Dial(ctx, d.t.Addr, &d.login)
		if err == nil {
			if err = d.afterLogin(ctx, s); err == nil {
				d.log.Info("iscsi: reconnected", "attempt", n)
				return s, nil
			}
			s.Close()
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		last = err
		d.log.Warn("iscsi: reconnect failed", "attempt", n, "err", err)
		var le *initiator.LoginError
		if errors.As(err, &le) && le.Status>>8 == 2 {
			break // an initiator error (authentication, no such target): retrying will not help
		}
	}
	return nil, fmt.Errorf("%w: %s: reconnect failed after %d attempts: %w", blockdev.ErrUnavailable, d.t, n, last)
}

// afterLogin clears the unit attentions a new session starts with and
// reads the capacity again, which may have changed while disconnected.
func (d *Device) afterLogin(ctx context.Context, s *initiator.Session) error {
	if _, err := s.ClearUnitAttentions(ctx, d.t.LUN); err != nil {
		return err
	}
	d.refreshCapacity(ctx, s)
	return nil
}

// direct runs commands on s without any retry (for refreshes inside
// recovery, which must not recurse into it).
func direct(s *initiator.Session) execFunc {
	return func(ctx context.Context, cmd *initiator.Command) (*initiator.Result, uint64, error) {
		res, err := s.Do(ctx, cmd)
		if err != nil {
			return nil, 0, err
		}
		if c, err := classify(res.Status, res.SenseData()); c != classDone {
			return nil, 0, err
		}
		return res, 0, nil
	}
}

// refreshCapacity reads the capacity on s and publishes a changed size.
func (d *Device) refreshCapacity(ctx context.Context, s *initiator.Session) {
	cur := d.info.Load()
	if cur == nil {
		return // still opening: probe reads it
	}
	c, err := d.readCapacity(ctx, direct(s))
	if err != nil {
		d.log.Warn("iscsi: reading the capacity again failed", "err", err)
		return
	}
	if c.blockSize != cur.LogicalBlockSize {
		d.log.Error("iscsi: the target changed the logical block size; keeping the old geometry",
			"old", cur.LogicalBlockSize, "new", c.blockSize)
		return
	}
	if size := int64(c.blocks) * int64(c.blockSize); size != cur.SizeBytes {
		info := *cur
		info.SizeBytes = size
		d.info.Store(&info)
		d.log.Info("iscsi: capacity changed", "old", cur.SizeBytes, "new", size)
	}
}

// drop ends session generation gen after a failure (if it is still the
// current one). Unflushed writes acknowledged on it may be lost.
func (d *Device) drop(gen uint64, why error) {
	d.mu.Lock()
	s := d.mu.s
	if d.mu.gen != gen || s == nil {
		d.mu.Unlock()
		return
	}
	d.mu.s = nil
	if d.mu.acked > d.mu.flushed {
		d.mu.lost = true
	}
	d.mu.Unlock()
	d.log.Warn("iscsi: connection lost", "err", why)
	// Close waits for the session's reader: once it returns, no PDU of
	// a forgotten command touches a caller's buffer any more.
	s.Close()
}

// noteWrite records a volatile write acknowledged on session gen.
func (d *Device) noteWrite(gen uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if gen != d.mu.gen || d.mu.s == nil {
		d.mu.lost = true // acknowledged by a session already lost
		return
	}
	d.mu.acked++
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// exec runs cmd to a GOOD completion and returns its result and the
// generation of the session that completed it. It reconnects after a
// connection loss (at most maxCommandReconnects times per command),
// clears unit attentions and retries once, retries BUSY, TASK SET FULL
// and NOT READY (becoming ready) with backoff for BusyTimeout, and
// retries aborted commands a few times. Every command the Device sends
// is idempotent, so sending one again is always safe.
//
// A command whose context ends while it is in flight ends the connection
// (and waits for its reader), so that no late Data-In lands in a buffer
// the caller has taken back; the next command connects again.
func (d *Device) exec(ctx context.Context, cmd *initiator.Command) (*initiator.Result, uint64, error) {
	var (
		reconnects, transient int
		uaDone                bool
		busySince             time.Time
		backoff               = 10 * time.Millisecond
	)
	for {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		s, gen, err := d.session(ctx)
		if err != nil {
			return nil, 0, err
		}
		cctx, cancel := context.WithTimeout(ctx, d.o.CommandTimeout)
		p, err := s.Start(cctx, cmd)
		var res *initiator.Result
		if err == nil {
			res, err = p.Wait(cctx)
			if err != nil && cctx.Err() != nil {
				// In flight and abandoned: end the connection.
				why := error(fmt.Errorf("no answer within %v", d.o.CommandTimeout))
				if ctx.Err() != nil {
					why = ctx.Err()
				}
				d.drop(gen, why)
			}
		}
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, 0, ctx.Err()
			}
			var rej *initiator.RejectError
			if errors.As(err, &rej) {
				return nil, gen, fmt.Errorf("%w: %w", ErrTarget, err)
			}
			d.drop(gen, err)
			if reconnects++; reconnects > maxCommandReconnects {
				return nil, gen, fmt.Errorf("%w: %s: connection lost %d times during one command: %w",
					blockdev.ErrUnavailable, d.t, reconnects, err)
			}
			continue
		}
		if res.Response != pdu.RespCommandCompleted {
			if transient++; transient > maxTransientRetries {
				return nil, gen, fmt.Errorf("%w: %w", blockdev.ErrUnavailable, res.Err())
			}
			continue
		}
		c, cerr := classify(res.Status, res.SenseData())
		switch c {
		case classDone:
			return res, gen, nil
		case classUA:
			if uaDone {
				return nil, gen, cerr
			}
			uaDone = true
			d.unitAttention(ctx, s, res.SenseData())
		case classBusy:
			if busySince.IsZero() {
				busySince = time.Now()
			}
			if time.Since(busySince) >= d.o.BusyTimeout {
				return nil, gen, cerr
			}
			d.log.Debug("iscsi: target busy; retrying", "status", res.Status, "backoff", backoff)
			if err := sleep(ctx, backoff); err != nil {
				return nil, 0, err
			}
			backoff = min(2*backoff, time.Second)
		case classTransient:
			if transient++; transient > maxTransientRetries {
				return nil, gen, cerr
			}
		default:
			return nil, gen, cerr
		}
	}
}

// unitAttention handles a unit attention: it clears the others queued
// for this session and reads the capacity again when it may have changed.
func (d *Device) unitAttention(ctx context.Context, s *initiator.Session, first initiator.Sense) {
	seen, err := s.ClearUnitAttentions(ctx, d.t.LUN)
	if err != nil {
		d.log.Debug("iscsi: clearing unit attentions", "err", err)
	}
	refresh := false
	for _, u := range append([]initiator.Sense{first}, seen...) {
		d.log.Debug("iscsi: unit attention", "sense", u.String())
		// 29/xx power on or reset, 2A/09 capacity data has changed.
		if u.ASC == 0x29 || u.ASC == 0x2a && u.ASCQ == 0x09 {
			refresh = true
		}
	}
	if refresh {
		d.refreshCapacity(ctx, s)
	}
}

// split runs fn over [off, off+n) in pieces of at most max bytes, up to
// MaxParallel at once. After a failure no new piece starts; pieces in
// flight finish. It returns the first error.
func (d *Device) split(ctx context.Context, off, n, max int64, fn func(ctx context.Context, off, n int64) error) error {
	if n <= max {
		return fn(ctx, off, n)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return first != nil
	}
	sem := make(chan struct{}, d.o.MaxParallel)
	for pos := off; pos < off+n && !failed(); pos += max {
		k := min(max, off+n-pos)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(ctx, pos, k); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

// rw16 builds a READ (16) or WRITE (16) CDB.
func rw16(op byte, fua bool, lba uint64, blocks uint32) []byte {
	cdb := make([]byte, 16)
	cdb[0] = op
	if fua {
		cdb[1] = 0x08
	}
	binary.BigEndian.PutUint64(cdb[2:], lba)
	binary.BigEndian.PutUint32(cdb[10:], blocks)
	return cdb
}

// ReadAt implements blockdev.Device with READ (16), split at the maximum
// transfer length; the pieces run in parallel.
func (d *Device) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := d.begin(); err != nil {
		return err
	}
	defer d.end()
	info := d.Info()
	if err := blockdev.CheckRange(info, off, int64(len(p))); err != nil {
		return err
	}
	if len(p) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	bs := int64(info.LogicalBlockSize)
	return d.split(ctx, off, int64(len(p)), d.maxXfer, func(ctx context.Context, pos, n int64) error {
		buf := p[pos-off : pos-off+n]
		cmd := &initiator.Command{LUN: d.t.LUN, CDB: rw16(0x88, false, uint64(pos/bs), uint32(n/bs)), Read: true, ReadBuf: buf, ExpectedLen: uint32(n)}
		res, _, err := d.exec(ctx, cmd)
		if err != nil {
			return fmt.Errorf("iscsi: read %d bytes at %d: %w", n, pos, err)
		}
		if int64(len(res.Data)) != n || (res.Underflow && res.Residual != 0) {
			return fmt.Errorf("%w: READ (16) at %d returned %d of %d bytes", ErrTarget, pos, len(res.Data), n)
		}
		if &res.Data[0] != &buf[0] {
			copy(buf, res.Data) // never with a buffer of the right size; kept for safety
		}
		return nil
	})
}

// WriteAt implements blockdev.Device with WRITE (16) (FUA set for
// blockdev.FUA), split at the maximum transfer length; the pieces run in
// parallel.
func (d *Device) WriteAt(ctx context.Context, p []byte, off int64, flags blockdev.WriteFlags) error {
	if err := d.begin(); err != nil {
		return err
	}
	defer d.end()
	info := d.Info()
	if err := blockdev.CheckRange(info, off, int64(len(p))); err != nil {
		return err
	}
	if len(p) == 0 {
		return nil
	}
	if d.readOnly {
		return fmt.Errorf("iscsi: write to %s: %w", d.t, blockdev.ErrReadOnly)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	bs := int64(info.LogicalBlockSize)
	fua := flags&blockdev.FUA != 0
	return d.split(ctx, off, int64(len(p)), d.maxXfer, func(ctx context.Context, pos, n int64) error {
		cmd := &initiator.Command{LUN: d.t.LUN, CDB: rw16(0x8a, fua, uint64(pos/bs), uint32(n/bs)), Write: true, Data: p[pos-off : pos-off+n]}
		_, gen, err := d.exec(ctx, cmd)
		if err != nil {
			return fmt.Errorf("iscsi: write %d bytes at %d: %w", n, pos, err)
		}
		if !fua {
			d.noteWrite(gen)
		}
		return nil
	})
}

// Flush implements blockdev.Device with SYNCHRONIZE CACHE (10) over the
// whole logical unit. It fails with ErrLostWrites once a connection was
// lost while writes were unflushed.
func (d *Device) Flush(ctx context.Context) error {
	if err := d.begin(); err != nil {
		return err
	}
	defer d.end()
	if err := ctx.Err(); err != nil {
		return err
	}
	if d.readOnly {
		return nil
	}
	return d.flush(ctx)
}

func (d *Device) flush(ctx context.Context) error {
	d.mu.Lock()
	seq := d.mu.acked
	d.mu.Unlock()
	_, gen, err := d.exec(ctx, &initiator.Command{LUN: d.t.LUN, CDB: []byte{0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0}})
	var se *initiator.StatusError
	if errors.As(err, &se) && se.Sense.Key == initiator.SenseIllegalRequest && se.Sense.ASC == 0x20 {
		// No SYNCHRONIZE CACHE: the target has no volatile cache to
		// flush (SBC-3 makes the command optional then).
		err = nil
	}
	if err != nil {
		return fmt.Errorf("iscsi: synchronize cache: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mu.lost {
		return fmt.Errorf("%w (%s)", ErrLostWrites, d.t)
	}
	if gen == d.mu.gen && seq > d.mu.flushed {
		d.mu.flushed = seq
	}
	return nil
}

// Close implements blockdev.Device: it waits for calls in progress,
// flushes, and logs out.
func (d *Device) Close() error {
	d.mu.Lock()
	if d.mu.closed {
		d.mu.Unlock()
		return blockdev.ErrClosed
	}
	d.mu.closed = true
	d.mu.Unlock()
	d.inflight.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	var err error
	if !d.readOnly {
		err = d.flush(ctx)
	}
	d.mu.Lock()
	s := d.mu.s
	d.mu.s = nil
	d.mu.Unlock()
	if s != nil {
		if lerr := s.Logout(ctx); lerr != nil && err == nil && !errors.Is(lerr, initiator.ErrClosed) {
			err = fmt.Errorf("iscsi: logout from %s: %w", d.t, lerr)
		}
	}
	return err
}

// writeCheck is the common prologue of the provisioning writes.
func (d *Device) writeCheck(ctx context.Context, off, length int64) (blockdev.Info, error) {
	info := d.Info()
	if err := blockdev.CheckRange(info, off, length); err != nil {
		return info, err
	}
	if length == 0 {
		return info, nil
	}
	if d.readOnly {
		return info, fmt.Errorf("iscsi: %s: %w", d.t, blockdev.ErrReadOnly)
	}
	return info, ctx.Err()
}

// unmap sends UNMAP commands of one block descriptor each, at most
// MAXIMUM UNMAP LBA COUNT blocks long:
//
//	parameter list: 0..1 UNMAP DATA LENGTH (22), 2..3 BLOCK DESCRIPTOR DATA LENGTH (16), 4..7 reserved,
//	                8..15 LBA, 16..19 NUMBER OF LOGICAL BLOCKS, 20..23 reserved
func (d *Device) unmap(ctx context.Context, off, length int64) error {
	if err := d.begin(); err != nil {
		return err
	}
	defer d.end()
	info, err := d.writeCheck(ctx, off, length)
	if err != nil || length == 0 {
		return err
	}
	bs := int64(info.LogicalBlockSize)
	return d.split(ctx, off, length, int64(d.feat.unmapMax)*bs, func(ctx context.Context, pos, n int64) error {
		param := make([]byte, 24)
		binary.BigEndian.PutUint16(param[0:], 22)
		binary.BigEndian.PutUint16(param[2:], 16)
		binary.BigEndian.PutUint64(param[8:], uint64(pos/bs))
		binary.BigEndian.PutUint32(param[16:], uint32(n/bs))
		cdb := []byte{0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0}
		_, gen, err := d.exec(ctx, &initiator.Command{LUN: d.t.LUN, CDB: cdb, Write: true, Data: param})
		if err != nil {
			return fmt.Errorf("iscsi: unmap %d bytes at %d: %w", n, pos, err)
		}
		d.noteWrite(gen)
		return nil
	})
}

// writeZeroes sends WRITE SAME (16) with one zero block, with the UNMAP
// bit when asked and the target deallocates to zeros (LBPWS, LBPRZ). A
// FUA write ends with a SYNCHRONIZE CACHE: WRITE SAME has no FUA bit.
func (d *Device) writeZeroes(ctx context.Context, off, length int64, unmap bool, flags blockdev.WriteFlags) error {
	if err := d.begin(); err != nil {
		return err
	}
	defer d.end()
	info, err := d.writeCheck(ctx, off, length)
	if err != nil || length == 0 {
		return err
	}
	bs := int64(info.LogicalBlockSize)
	err = d.split(ctx, off, length, int64(d.feat.wsMax)*bs, func(ctx context.Context, pos, n int64) error {
		cdb := make([]byte, 16)
		cdb[0] = 0x93
		if unmap && d.feat.wsUnmap {
			cdb[1] = 0x08
		}
		binary.BigEndian.PutUint64(cdb[2:], uint64(pos/bs))
		binary.BigEndian.PutUint32(cdb[10:], uint32(n/bs))
		_, gen, err := d.exec(ctx, &initiator.Command{LUN: d.t.LUN, CDB: cdb, Write: true, Data: d.zero})
		if err != nil {
			return fmt.Errorf("iscsi: write zeroes over %d bytes at %d: %w", n, pos, err)
		}
		d.noteWrite(gen)
		return nil
	})
	if err == nil && flags&blockdev.FUA != 0 {
		err = d.flush(ctx)
	}
	return err
}

// allocationStatus sends GET LBA STATUS for the range and converts the
// descriptors; it may cover less than asked (one answer's worth).
func (d *Device) allocationStatus(ctx context.Context, off, length int64) ([]blockdev.Extent, error) {
	if err := d.begin(); err != nil {
		return nil, err
	}
	defer d.end()
	info := d.Info()
	if err := blockdev.CheckRange(info, off, length); err != nil {
		return nil, err
	}
	if length == 0 {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	bs := uint64(info.LogicalBlockSize)
	lba := uint64(off) / bs
	res, _, err := d.exec(ctx, lbaStatusCmd(d.t.LUN, lba, 8+16*maxStatusDescriptors))
	if err != nil {
		return nil, fmt.Errorf("iscsi: get lba status at %d: %w", off, err)
	}
	st, err := parseLBAStatus(res.Data, lba, uint64(length)/bs)
	if err != nil {
		return nil, err
	}
	out := make([]blockdev.Extent, len(st))
	for i, s := range st {
		out[i] = blockdev.Extent{Off: int64(s.lba * bs), Len: int64(s.blocks * bs), State: blockdev.ExtentState(s.state)}
	}
	return out, nil
}
