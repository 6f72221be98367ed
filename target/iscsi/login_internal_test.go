package iscsi

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/lunway/lunway/target/pdu"
)

// TestCloseSessionRacingLogin closes a session in the window between its
// registration and the end of its login, when the login clears its
// deadline: CloseSession must still end it (it used to hang, the read
// loop blocked with no deadline).
func TestCloseSessionRacingLogin(t *testing.T) {
	srv := pipeTarget(t, &Options{NopInterval: -1})
	closed := make(chan error, 1)
	testHookLoggedIn = func(c *conn) {
		go func() { closed <- srv.CloseSession(c.sess.id) }()
		<-c.ctx.Done()                    // abort cancelled the session...
		time.Sleep(50 * time.Millisecond) // ...and set its deadline, which login now clears
	}
	defer func() { testHookLoggedIn = nil }()
	c, b := servePipe(srv)
	go io.Copy(io.Discard, b)
	seed := loginSeed(fuzzTarget)
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
