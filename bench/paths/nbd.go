package paths

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// A small NBD client (the fixed newstyle handshake, NBD_OPT_GO, simple
// replies) so that the workload engine drives QEMU's block layer exactly as
// it drives an iSCSI LUN: qemu-nbd stands for the hypervisor's virtual disk
// driver (VMDK, qcow2, raw) between the guest and the datastore.

// NBD protocol constants (the NBD protocol document, "fixed newstyle").
const (
	nbdMagic          = 0x4e42444d41474943 // "NBDMAGIC"
	nbdOptMagic       = 0x49484156454f5054 // "IHAVEOPT"
	nbdRepMagic       = 0x0003e889045565a9
	nbdRequestMagic   = 0x25609513
	nbdSimpleReply    = 0x67446698
	nbdFlagFixed      = 1 << 0
	nbdFlagNoZeroes   = 1 << 1
	nbdOptGo          = 7
	nbdRepAck         = 1
	nbdRepInfo        = 3
	nbdRepErrBit      = 1 << 31
	nbdInfoExport     = 0
	nbdCmdRead        = 0
	nbdCmdWrite       = 1
	nbdCmdDisc        = 2
	nbdCmdFlush       = 3
	nbdTFlagHasFlags  = 1 << 0
	nbdTFlagReadOnly  = 1 << 1
	nbdTFlagSendFlush = 1 << 2

	// nbdMaxOptReply caps an option reply's payload.
	nbdMaxOptReply = 64 << 10
	// nbdMaxIO caps one request's length (QEMU's own limit is 32 MiB).
	nbdMaxIO = 32 << 20
	// nbdMaxReplies caps the option replies of one NBD_OPT_GO.
	nbdMaxReplies = 64
)

// Errors of the NBD client.
var (
	// ErrNBDProtocol reports a server that broke the protocol.
	ErrNBDProtocol = errors.New("paths: NBD protocol error")
	// ErrNBDRefused reports an option the server refused.
	ErrNBDRefused = errors.New("paths: NBD option refused")
	// ErrNBDIO reports an I/O request the server answered with an error.
	ErrNBDIO = errors.New("paths: NBD I/O error")
	// ErrNBDClosed reports use of a closed or failed connection.
	ErrNBDClosed = errors.New("paths: NBD connection closed")
)

// nbdExport is what NBD_OPT_GO tells about an export.
type nbdExport struct {
	Size  uint64
	Flags uint16
}

// nbdOptReply is the header of one option reply.
type nbdOptReply struct {
	Option uint32
	Type   uint32
	Length uint32
}

// parseNBDGreeting checks the server's 18-byte greeting and returns its
// handshake flags.
func parseNBDGreeting(b []byte) (uint16, error) {
	if len(b) < 18 {
		return 0, fmt.Errorf("%w: short greeting", ErrNBDProtocol)
	}
	if binary.BigEndian.Uint64(b) != nbdMagic || binary.BigEndian.Uint64(b[8:]) != nbdOptMagic {
		return 0, fmt.Errorf("%w: not a newstyle NBD server", ErrNBDProtocol)
	}
	flags := binary.BigEndian.Uint16(b[16:])
	if flags&nbdFlagFixed == 0 {
		return 0, fmt.Errorf("%w: server lacks fixed newstyle", ErrNBDProtocol)
	}
	return flags, nil
}

// parseNBDOptReply parses a 20-byte option reply header.
func parseNBDOptReply(b []byte) (nbdOptReply, error) {
	if len(b) < 20 {
		return nbdOptReply{}, fmt.Errorf("%w: short option reply", ErrNBDProtocol)
	}
	if binary.BigEndian.Uint64(b) != nbdRepMagic {
		return nbdOptReply{}, fmt.Errorf("%w: bad option reply magic", ErrNBDProtocol)
	}
	r := nbdOptReply{
		Option: binary.BigEndian.Uint32(b[8:]),
		Type:   binary.BigEndian.Uint32(b[12:]),
		Length: binary.BigEndian.Uint32(b[16:]),
	}
	if r.Length > nbdMaxOptReply {
		return nbdOptReply{}, fmt.Errorf("%w: option reply of %d bytes", ErrNBDProtocol, r.Length)
	}
	return r, nil
}

// parseNBDInfo parses an NBD_REP_INFO payload; ok is false for info types
// other than NBD_INFO_EXPORT (which are skipped).
func parseNBDInfo(b []byte) (exp nbdExport, ok bool, err error) {
	if len(b) < 2 {
		return nbdExport{}, false, fmt.Errorf("%w: short info reply", ErrNBDProtocol)
	}
	if binary.BigEndian.Uint16(b) != nbdInfoExport {
		return nbdExport{}, false, nil
	}
	if len(b) != 12 {
		return nbdExport{}, false, fmt.Errorf("%w: export info of %d bytes", ErrNBDProtocol, len(b))
	}
	return nbdExport{Size: binary.BigEndian.Uint64(b[2:]), Flags: binary.BigEndian.Uint16(b[10:])}, true, nil
}

// nbdSimple is a parsed simple reply header.
type nbdSimple struct {
	Error  uint32
	Handle uint64
}

// parseNBDSimpleReply parses a 16-byte simple reply header.
func parseNBDSimpleReply(b []byte) (nbdSimple, error) {
	if len(b) < 16 {
		return nbdSimple{}, fmt.Errorf("%w: short reply", ErrNBDProtocol)
	}
	if binary.BigEndian.Uint32(b) != nbdSimpleReply {
		return nbdSimple{}, fmt.Errorf("%w: bad reply magic %#x", ErrNBDProtocol, binary.BigEndian.Uint32(b))
	}
	return nbdSimple{Error: binary.BigEndian.Uint32(b[4:]), Handle: binary.BigEndian.Uint64(b[8:])}, nil
}

// appendNBDRequest appends a 28-byte request header.
func appendNBDRequest(b []byte, typ uint16, handle uint64, off uint64, length uint32) []byte {
	b = binary.BigEndian.AppendUint32(b, nbdRequestMagic)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, handle)
	b = binary.BigEndian.AppendUint64(b, off)
	return binary.BigEndian.AppendUint32(b, length)
}

// nbdHandshake runs the client side of the fixed newstyle handshake with
// NBD_OPT_GO for export name on rw.
func nbdHandshake(rw io.ReadWriter, name string) (nbdExport, error) {
	if len(name) > 4096 {
		return nbdExport{}, fmt.Errorf("paths: NBD export name of %d bytes", len(name))
	}
	var hdr [20]byte
	if _, err := io.ReadFull(rw, hdr[:18]); err != nil {
		return nbdExport{}, fmt.Errorf("%w: greeting: %w", ErrNBDProtocol, err)
	}
	flags, err := parseNBDGreeting(hdr[:18])
	if err != nil {
		return nbdExport{}, err
	}
	cflags := uint32(nbdFlagFixed)
	if flags&nbdFlagNoZeroes != 0 {
		cflags |= nbdFlagNoZeroes
	}
	req := binary.BigEndian.AppendUint32(nil, cflags)
	req = binary.BigEndian.AppendUint64(req, nbdOptMagic)
	req = binary.BigEndian.AppendUint32(req, nbdOptGo)
	req = binary.BigEndian.AppendUint32(req, uint32(4+len(name)+2))
	req = binary.BigEndian.AppendUint32(req, uint32(len(name)))
	req = append(req, name...)
	req = binary.BigEndian.AppendUint16(req, 0) // no info requests: the export info comes anyway
	if _, err := rw.Write(req); err != nil {
		return nbdExport{}, fmt.Errorf("paths: NBD: %w", err)
	}
	var (
		exp     nbdExport
		haveExp bool
	)
	for range nbdMaxReplies {
		if _, err := io.ReadFull(rw, hdr[:20]); err != nil {
			return nbdExport{}, fmt.Errorf("%w: option reply: %w", ErrNBDProtocol, err)
		}
		r, err := parseNBDOptReply(hdr[:20])
		if err != nil {
			return nbdExport{}, err
		}
		data := make([]byte, r.Length)
		if _, err := io.ReadFull(rw, data); err != nil {
			return nbdExport{}, fmt.Errorf("%w: option reply: %w", ErrNBDProtocol, err)
		}
		if r.Option != nbdOptGo {
			return nbdExport{}, fmt.Errorf("%w: reply to option %d", ErrNBDProtocol, r.Option)
		}
		switch {
		case r.Type&nbdRepErrBit != 0:
			return nbdExport{}, fmt.Errorf("%w: NBD_OPT_GO: error %#x %q", ErrNBDRefused, r.Type, printable(data))
		case r.Type == nbdRepInfo:
			e, ok, err := parseNBDInfo(data)
			if err != nil {
				return nbdExport{}, err
			}
			if ok {
				exp, haveExp = e, true
			}
		case r.Type == nbdRepAck:
			if !haveExp {
				return nbdExport{}, fmt.Errorf("%w: NBD_OPT_GO acknowledged without export info", ErrNBDProtocol)
			}
			return exp, nil
		default:
			return nbdExport{}, fmt.Errorf("%w: unexpected reply type %d", ErrNBDProtocol, r.Type)
		}
	}
	return nbdExport{}, fmt.Errorf("%w: more than %d option replies", ErrNBDProtocol, nbdMaxReplies)
}

// printable keeps a server-supplied message short and printable.
func printable(b []byte) string {
	if len(b) > 200 {
		b = b[:200]
	}
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		out = append(out, c)
	}
	return string(out)
}

// NBD is a client connection to one NBD export. Its methods may be called
// concurrently: requests are pipelined and matched to replies by handle.
type NBD struct {
	conn   net.Conn
	size   int64
	flush  bool
	wmu    sync.Mutex // serializes request writes
	mu     sync.Mutex
	next   uint64
	wait   map[uint64]*nbdCall
	err    error // set once when the connection fails
	done   chan struct{}
	reader sync.WaitGroup
}

type nbdCall struct {
	buf  []byte // read destination
	done chan error
}

// DialNBD connects to an NBD server (network "tcp" or "unix") and opens
// the export name.
func DialNBD(ctx context.Context, network, addr, name string) (*NBD, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("paths: NBD dial %s: %w", addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(30 * time.Second))
	}
	exp, err := nbdHandshake(conn, name)
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	if exp.Size > 1<<62 {
		conn.Close()
		return nil, fmt.Errorf("%w: export size %d", ErrNBDProtocol, exp.Size)
	}
	n := &NBD{
		conn: conn, size: int64(exp.Size),
		flush: exp.Flags&nbdTFlagHasFlags != 0 && exp.Flags&nbdTFlagSendFlush != 0,
		wait:  map[uint64]*nbdCall{}, done: make(chan struct{}),
	}
	n.reader.Add(1)
	go n.readLoop(bufio.NewReaderSize(conn, 256<<10))
	return n, nil
}

// Size is the export's size in bytes.
func (n *NBD) Size() int64 { return n.size }

func (n *NBD) fail(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.err != nil {
		return
	}
	n.err = err
	close(n.done)
	for h, c := range n.wait {
		c.done <- err
		delete(n.wait, h)
	}
}

func (n *NBD) readLoop(r *bufio.Reader) {
	defer n.reader.Done()
	var hdr [16]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			n.fail(fmt.Errorf("%w: %w", ErrNBDClosed, err))
			return
		}
		rep, err := parseNBDSimpleReply(hdr[:])
		if err != nil {
			n.fail(err)
			n.conn.Close()
			return
		}
		n.mu.Lock()
		c := n.wait[rep.Handle]
		delete(n.wait, rep.Handle)
		n.mu.Unlock()
		if c == nil {
			n.fail(fmt.Errorf("%w: reply for unknown handle %d", ErrNBDProtocol, rep.Handle))
			n.conn.Close()
			return
		}
		var cerr error
		if rep.Error != 0 {
			cerr = fmt.Errorf("%w: errno %d", ErrNBDIO, rep.Error)
		} else if c.buf != nil {
			if _, err := io.ReadFull(r, c.buf); err != nil {
				c.done <- err
				n.fail(fmt.Errorf("%w: %w", ErrNBDClosed, err))
				return
			}
		}
		c.done <- cerr
	}
}

func (n *NBD) do(ctx context.Context, typ uint16, off int64, length int, out, in []byte) error {
	if length < 0 || length > nbdMaxIO || off < 0 || off+int64(length) > n.size {
		return fmt.Errorf("paths: NBD request [%d, +%d) outside the %d-byte export or too large", off, length, n.size)
	}
	c := &nbdCall{buf: in, done: make(chan error, 1)}
	n.mu.Lock()
	if n.err != nil {
		n.mu.Unlock()
		return n.err
	}
	n.next++
	h := n.next
	n.wait[h] = c
	n.mu.Unlock()

	n.wmu.Lock()
	hdr := appendNBDRequest(make([]byte, 0, 28), typ, h, uint64(off), uint32(length))
	_, err := n.conn.Write(hdr)
	if err == nil && out != nil {
		_, err = n.conn.Write(out)
	}
	n.wmu.Unlock()
	if err != nil {
		n.fail(fmt.Errorf("%w: %w", ErrNBDClosed, err))
		n.conn.Close()
	}
	select {
	case err := <-c.done:
		return err
	case <-ctx.Done():
		// The reply may still come; the connection is no longer in a
		// known state, so it is closed.
		n.fail(fmt.Errorf("%w: %w", ErrNBDClosed, ctx.Err()))
		n.conn.Close()
		<-c.done // the reader no longer touches c.buf
		return ctx.Err()
	}
}

// ReadAt reads len(p) bytes at off.
func (n *NBD) ReadAt(ctx context.Context, p []byte, off int64) error {
	return n.do(ctx, nbdCmdRead, off, len(p), nil, p)
}

// WriteAt writes p at off.
func (n *NBD) WriteAt(ctx context.Context, p []byte, off int64) error {
	return n.do(ctx, nbdCmdWrite, off, len(p), p, nil)
}

// Flush asks the server to make completed writes durable (a no-op when
// the export does not take flushes).
func (n *NBD) Flush(ctx context.Context) error {
	if !n.flush {
		return nil
	}
	return n.do(ctx, nbdCmdFlush, 0, 0, nil, nil)
}

// Close sends NBD_CMD_DISC, closes the connection and waits for the reader.
func (n *NBD) Close() error {
	n.mu.Lock()
	failed := n.err != nil
	n.mu.Unlock()
	if !failed {
		n.wmu.Lock()
		n.conn.SetWriteDeadline(time.Now().Add(time.Second))
		n.conn.Write(appendNBDRequest(nil, nbdCmdDisc, 0, 0, 0))
		n.wmu.Unlock()
	}
	err := n.conn.Close()
	n.reader.Wait()
	n.fail(ErrNBDClosed)
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
