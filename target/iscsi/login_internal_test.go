package iscsi

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/lunway/lunway/blockdev/mem"
	"github.com/lunway/lunway/target/pdu"
	"github.com/lunway/lunway/target/scsi"
)

// TestCloseSessionRacingLogin closes a session in the window between its
// registration and the end of its login, when the login clears its
// deadline: CloseSession must still end it (it used to hang, the read
// loop blocked with no deadline).
func TestCloseSessionRacingLogin(t *testing.T) {
	const target = "iqn.2026-01.io.lunway:fuzz"
	srv, err := NewServer(&Options{NopInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	st := scsi.NewTarget(target, nil)
	d, _ := mem.New(1<<20, nil)
	lu, _ := scsi.NewLU(scsi.LUOptions{Device: d})
	st.AddLU(0, lu)
	srv.AddTarget(TargetConfig{Name: target, SCSI: st})
	closed := make(chan error, 1)
	testHookLoggedIn = func(c *conn) {
		go func() { closed <- srv.CloseSession(c.sess.id) }()
		<-c.ctx.Done()                    // abort cancelled the session...
		time.Sleep(50 * time.Millisecond) // ...and set its deadline, which login now clears
	}
	defer func() { testHookLoggedIn = nil }()
	a, b := net.Pipe()
	c := newConn(srv, a, 1)
	srv.mu.Lock()
	srv.mu.conns[c] = struct{}{}
	srv.mu.Unlock()
	go c.serve()
	go io.Copy(io.Discard, b)
	seed := loginSeed(target)
	// Only the two login requests: the initiator then waits, sending nothing.
	r := pdu.NewReader(bytes.NewReader(seed), pdu.Limits{})
	var login []byte
	for range 2 {
		p, err := r.ReadPDU()
		if err != nil {
			t.Fatal(err)
		}
		login = pdu.AppendPDU(login, &p.BHS, nil, p.Data, false, false)
	}
	if _, err := b.Write(login); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("CloseSession during the end of the login did not end the session")
	}
	<-c.done
	b.Close()
}
