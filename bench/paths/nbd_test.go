package paths

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
)

// Golden wire bytes, from the NBD protocol document's layouts.
const (
	// NBDMAGIC, IHAVEOPT, flags FIXED_NEWSTYLE|NO_ZEROES.
	goldenGreeting = "4e42444d41474943" + "49484156454f5054" + "0003"
	// Client flags FIXED|NO_ZEROES, IHAVEOPT, NBD_OPT_GO, length 6, name
	// length 0, no info requests.
	goldenGoDefault = "00000003" + "49484156454f5054" + "00000007" + "00000006" + "00000000" + "0000"
	// Reply magic, option GO, NBD_REP_INFO, length 12, NBD_INFO_EXPORT,
	// size 64 MiB, flags HAS_FLAGS|SEND_FLUSH.
	goldenInfo = "0003e889045565a9" + "00000007" + "00000003" + "0000000c" + "0000" + "0000000004000000" + "0005"
	// Reply magic, option GO, NBD_REP_ACK, length 0.
	goldenAck = "0003e889045565a9" + "00000007" + "00000001" + "00000000"
	// Request magic, flags 0, NBD_CMD_WRITE, handle 7, offset 4096, length 512.
	goldenWrite = "25609513" + "0000" + "0001" + "0000000000000007" + "0000000000001000" + "00000200"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNBDRequestGolden(t *testing.T) {
	got := appendNBDRequest(nil, nbdCmdWrite, 7, 4096, 512)
	if want := unhex(t, goldenWrite); !bytes.Equal(got, want) {
		t.Fatalf("request\n got %x\nwant %x", got, want)
	}
}

func TestNBDParsers(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		fn   func([]byte) error
		ok   bool
	}{
		{"greeting", goldenGreeting, func(b []byte) error { _, err := parseNBDGreeting(b); return err }, true},
		{"greeting short", goldenGreeting[:30], func(b []byte) error { _, err := parseNBDGreeting(b); return err }, false},
		{"greeting oldstyle", "4e42444d41474943" + "00420281861253" + "00" + "0003", func(b []byte) error { _, err := parseNBDGreeting(b); return err }, false},
		{"greeting not fixed", "4e42444d41474943" + "49484156454f5054" + "0002", func(b []byte) error { _, err := parseNBDGreeting(b); return err }, false},
		{"opt reply", goldenAck, func(b []byte) error { _, err := parseNBDOptReply(b); return err }, true},
		{"opt reply huge", "0003e889045565a9" + "00000007" + "00000003" + "7fffffff", func(b []byte) error { _, err := parseNBDOptReply(b); return err }, false},
		{"opt reply magic", "0003e889045565aa" + "00000007" + "00000001" + "00000000", func(b []byte) error { _, err := parseNBDOptReply(b); return err }, false},
		{"info export", goldenInfo[40:], func(b []byte) error { _, _, err := parseNBDInfo(b); return err }, true},
		{"info short export", "0000" + "00000000", func(b []byte) error { _, _, err := parseNBDInfo(b); return err }, false},
		{"info other type", "0003" + "00", func(b []byte) error { _, ok, err := parseNBDInfo(b); _ = ok; return err }, true},
		{"info empty", "", func(b []byte) error { _, _, err := parseNBDInfo(b); return err }, false},
		{"simple reply", "67446698" + "00000000" + "0000000000000007", func(b []byte) error { _, err := parseNBDSimpleReply(b); return err }, true},
		{"structured reply", "668e33ef" + "00000000" + "0000000000000007", func(b []byte) error { _, err := parseNBDSimpleReply(b); return err }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.fn(unhex(t, tc.in))
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrNBDProtocol) {
				t.Fatalf("err %v is not ErrNBDProtocol", err)
			}
		})
	}
	exp, ok, err := parseNBDInfo(unhex(t, goldenInfo[40:]))
	if err != nil || !ok || exp.Size != 64<<20 || exp.Flags != nbdTFlagHasFlags|nbdTFlagSendFlush {
		t.Fatalf("info = %+v %v %v", exp, ok, err)
	}
}

// fakeNBD is a minimal NBD server over memory for the client's tests: it
// answers the handshake with the golden replies and serves read, write,
// flush and disconnect, out of order when asked to.
type fakeNBD struct {
	mu      sync.Mutex
	data    []byte
	flushes int
	reverse bool // answer pairs of requests in reverse order
	failOff int64
}

func (f *fakeNBD) serve(t *testing.T, c net.Conn) {
	defer c.Close()
	c.Write(unhex(t, goldenGreeting))
	var opt [26]byte
	if _, err := io.ReadFull(c, opt[:]); err != nil {
		return
	}
	if !bytes.Equal(opt[:], unhex(t, goldenGoDefault)) {
		t.Errorf("NBD_OPT_GO = %x, want %s", opt, goldenGoDefault)
		return
	}
	info := unhex(t, goldenInfo)
	binary.BigEndian.PutUint64(info[22:], uint64(len(f.data)))
	c.Write(info)
	c.Write(unhex(t, goldenAck))
	var pending [][]byte
	for {
		var h [28]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return
		}
		typ := binary.BigEndian.Uint16(h[6:])
		handle := h[8:16]
		off := int64(binary.BigEndian.Uint64(h[16:]))
		n := int(binary.BigEndian.Uint32(h[24:]))
		rep := unhex(t, "67446698"+"00000000"+"0000000000000000")
		copy(rep[8:], handle)
		f.mu.Lock()
		switch typ {
		case nbdCmdRead:
			if off == f.failOff {
				binary.BigEndian.PutUint32(rep[4:], 5) // EIO
			} else {
				rep = append(rep, f.data[off:off+int64(n)]...)
			}
		case nbdCmdWrite:
			buf := make([]byte, n)
			io.ReadFull(c, buf)
			copy(f.data[off:], buf)
		case nbdCmdFlush:
			f.flushes++
		case nbdCmdDisc:
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
		pending = append(pending, rep)
		if !f.reverse || len(pending) == 2 {
			for i := len(pending) - 1; i >= 0; i-- {
				c.Write(pending[i])
			}
			pending = pending[:0]
		}
	}
}

func startFakeNBD(t *testing.T, f *fakeNBD) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); f.serve(t, c) }()
		}
	}()
	return ln.Addr().String()
}

func TestNBDClient(t *testing.T) {
	f := &fakeNBD{data: make([]byte, 1<<20), reverse: true, failOff: -1}
	addr := startFakeNBD(t, f)
	ctx := context.Background()
	n, err := DialNBD(ctx, "tcp", addr, "")
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.Size() != 1<<20 || !n.flush {
		t.Fatalf("size %d flush %v", n.Size(), n.flush)
	}
	// Two concurrent writes answered in reverse order, then reads back.
	a, b := bytes.Repeat([]byte{0xaa}, 4096), bytes.Repeat([]byte{0xbb}, 8192)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errs[0] = n.WriteAt(ctx, a, 0) }()
	go func() { defer wg.Done(); errs[1] = n.WriteAt(ctx, b, 65536) }()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	got1, got2 := make([]byte, 4096), make([]byte, 8192)
	wg.Add(2)
	go func() { defer wg.Done(); errs[0] = n.ReadAt(ctx, got1, 0) }()
	go func() { defer wg.Done(); errs[1] = n.ReadAt(ctx, got2, 65536) }()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got1, a) || !bytes.Equal(got2, b) {
		t.Fatal("read back differs")
	}
	f.reverse = false
	if err := n.Flush(ctx); err != nil || f.flushes != 1 {
		t.Fatalf("flush: %v, server saw %d", err, f.flushes)
	}
	if err := n.ReadAt(ctx, got1, 1<<20-100); err == nil {
		t.Fatal("read past the end succeeded")
	}
	f.mu.Lock()
	f.failOff = 8192
	f.mu.Unlock()
	if err := n.ReadAt(ctx, got1, 8192); !errors.Is(err, ErrNBDIO) {
		t.Fatalf("failed read: %v, want ErrNBDIO", err)
	}
}

// FuzzNBDHandshake feeds arbitrary server bytes to the client handshake: it
// must return (an export or an error) without panicking or over-reading.
func FuzzNBDHandshake(f *testing.F) {
	f.Add(unhex(f, goldenGreeting+goldenInfo+goldenAck))
	f.Add(unhex(f, goldenGreeting+goldenAck))
	f.Add(unhex(f, goldenGreeting+"0003e889045565a9"+"00000007"+"80000001"+"00000004"+"41424344"))
	f.Add(unhex(f, goldenGreeting[:20]))
	f.Fuzz(func(t *testing.T, server []byte) {
		rw := &scripted{in: bytes.NewReader(server)}
		exp, err := nbdHandshake(rw, "")
		// Success needs a greeting, an export info reply and an ack.
		if err == nil && len(server) < 18+20+12+20 {
			t.Fatalf("handshake succeeded on %d bytes: %+v", len(server), exp)
		}
	})
}

// FuzzNBDReply checks the reply parsers on arbitrary headers.
func FuzzNBDReply(f *testing.F) {
	f.Add(unhex(f, goldenAck))
	f.Add(unhex(f, goldenInfo))
	f.Add(unhex(f, "67446698"+"00000005"+"0000000000000007"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := parseNBDOptReply(b); err == nil && r.Length > nbdMaxOptReply {
			t.Fatalf("accepted length %d", r.Length)
		}
		parseNBDSimpleReply(b)
		if len(b) > 20 {
			parseNBDInfo(b[20:])
		}
		parseNBDGreeting(b)
	})
}

// scripted is a ReadWriter that reads a script and discards writes.
type scripted struct{ in io.Reader }

func (s *scripted) Read(p []byte) (int, error)  { return s.in.Read(p) }
func (s *scripted) Write(p []byte) (int, error) { return len(p), nil }

func TestNBDHandshakeRefused(t *testing.T) {
	srv := unhex(t, goldenGreeting+"0003e889045565a9"+"00000007"+"80000006"+"00000003"+"6e6f21")
	_, err := nbdHandshake(&scripted{in: bytes.NewReader(srv)}, "")
	if !errors.Is(err, ErrNBDRefused) {
		t.Fatalf("err = %v, want ErrNBDRefused", err)
	}
}
