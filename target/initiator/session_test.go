package initiator_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lunway/lunway/target/initiator"
	"github.com/lunway/lunway/target/iscsitest"
)

// countingConn counts the writes made to a connection.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func dialCounting(t *testing.T, srv *iscsitest.Server) (*initiator.Session, *countingConn) {
	t.Helper()
	nc, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	cc := &countingConn{Conn: nc}
	s, err := initiator.NewSession(t.Context(), cc, &initiator.Options{TargetName: srv.TargetName})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, cc
}

func rw16(op byte, lba uint64, blocks uint32) []byte {
	cdb := make([]byte, 16)
	cdb[0] = op
	binary.BigEndian.PutUint64(cdb[2:], lba)
	binary.BigEndian.PutUint32(cdb[10:], blocks)
	return cdb
}

// TestStartFuncCorked: nothing is written while the session is corked;
// the commands started meanwhile go out when it is uncorked (with one
// writev on a TCP connection), each completion reaches its callback
// exactly once, and the data round-trips.
func TestStartFuncCorked(t *testing.T) {
	srv := iscsitest.Start(t, nil)
	s, cc := dialCounting(t, srv)
	ctx := t.Context()
	if _, err := s.TestUnitReady(ctx, 0); err != nil { // the power-on unit attention
		t.Fatal(err)
	}
	const n = 16
	type result struct {
		q   int
		res *initiator.Result
		err error
	}
	results := make(chan result, 2*n)
	bufs := make([][]byte, n)
	before := cc.writes.Load()
	s.Cork()
	for q := range n {
		bufs[q] = bytes.Repeat([]byte{byte(q + 1)}, 4096)
		cmd := &initiator.Command{LUN: 0, CDB: rw16(0x8a, uint64(q*8), 8), Write: true, Data: bufs[q]}
		if err := s.StartFunc(ctx, cmd, func(res *initiator.Result, err error) { results <- result{q, res, err} }); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case r := <-results:
		t.Fatalf("command %d completed while the session was corked", r.q)
	case <-time.After(100 * time.Millisecond):
	}
	if w := cc.writes.Load() - before; w != 0 {
		t.Fatalf("%d writes while corked", w)
	}
	s.Uncork()
	seen := make(map[int]bool)
	for range n {
		r := <-results
		if r.err != nil || r.res.Err() != nil {
			t.Fatalf("command %d: %v %v", r.q, r.err, r.res.Err())
		}
		if seen[r.q] {
			t.Fatalf("command %d completed twice", r.q)
		}
		seen[r.q] = true
	}
	for q := range n {
		res, err := s.Read16(ctx, 0, uint64(q*8), 512, make([]byte, 4096))
		if err != nil || res.Err() != nil {
			t.Fatalf("read %d: %v %v", q, err, res.Err())
		}
		if !bytes.Equal(res.Data, bufs[q]) {
			t.Fatalf("read %d differs", q)
		}
	}
}

// TestStartFuncSessionEnd: a command whose session ends before its
// response gets its callback, once, with ErrClosed; StartFunc on an ended
// session returns the error and calls nothing.
func TestStartFuncSessionEnd(t *testing.T) {
	srv := iscsitest.Start(t, nil)
	s, _ := dialCounting(t, srv)
	ctx := t.Context()
	var mu sync.Mutex
	calls := 0
	var got error
	done := make(chan struct{})
	s.Cork() // held back, so that the session ends first
	cmd := &initiator.Command{LUN: 0, CDB: rw16(0x88, 0, 1), Read: true, ReadBuf: make([]byte, 512)}
	if err := s.StartFunc(ctx, cmd, func(_ *initiator.Result, err error) {
		mu.Lock()
		calls++
		got = err
		mu.Unlock()
		close(done)
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no callback after the session ended")
	}
	mu.Lock()
	if calls != 1 || !errors.Is(got, initiator.ErrClosed) {
		t.Fatalf("%d callbacks, err %v; want 1 with ErrClosed", calls, got)
	}
	mu.Unlock()
	err := s.StartFunc(context.Background(), cmd, func(*initiator.Result, error) { t.Error("callback for a command never sent") })
	if !errors.Is(err, initiator.ErrClosed) {
		t.Fatalf("StartFunc after the end: %v", err)
	}
	s.Uncork()
}
