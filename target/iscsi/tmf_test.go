package iscsi_test

import (
	"testing"
	"time"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/target/initiator"
	"github.com/lunway/lunway/target/iscsi"
	"github.com/lunway/lunway/target/iscsitest"
	"github.com/lunway/lunway/target/pdu"
	"github.com/lunway/lunway/target/scsi"
)

func TestTMFQueryAndResets(t *testing.T) {
	var g *gate
	srv := iscsitest.Start(t, &iscsitest.Options{
		Server: iscsi.Options{TMFTimeout: 300 * time.Millisecond},
		Wrap: func(_ int, d blockdev.Device) blockdev.Device {
			g = newGate(d)
			return g
		},
	})
	a := dial(t, srv, &initiator.Options{ISID: [6]byte{0x80, 0xa}})
	b := dial(t, srv, &initiator.Options{ISID: [6]byte{0x80, 0xb}})
	ctx := ctxT(t)
	g.closed.Store(true)
	cdb := make([]byte, 16)
	cdb[0], cdb[13] = 0x88, 8
	stuck, err := a.Start(ctx, &initiator.Command{CDB: cdb, Read: true, ExpectedLen: 4096})
	if err != nil {
		t.Fatal(err)
	}
	<-g.entered
	tmf := func(s *initiator.Session, fn scsi.TMFunction, ref uint32) uint8 {
		t.Helper()
		code, err := s.TaskManagement(ctx, fn, 0, ref, 0)
		if err != nil {
			t.Fatalf("TMF %d: %v", fn, err)
		}
		return code
	}
	if c := tmf(a, scsi.TMFQueryTask, stuck.ITT()); c != pdu.TMFRespSucceeded {
		t.Fatalf("QUERY TASK of a running task: %d", c)
	}
	if c := tmf(a, scsi.TMFQueryTask, 0x4242); c != pdu.TMFRespComplete {
		t.Fatalf("QUERY TASK of an unknown task: %d", c)
	}
	if c := tmf(a, scsi.TMFQueryTaskSet, 0); c != pdu.TMFRespSucceeded {
		t.Fatalf("QUERY TASK SET: %d", c)
	}
	// Warm reset: tasks aborted, sessions stay.
	if c := tmf(b, scsi.TMFTargetWarmReset, 0); c != pdu.TMFRespComplete {
		t.Fatalf("TARGET WARM RESET: %d", c)
	}
	g.closed.Store(false)
	close(g.open)
	for _, s := range []*initiator.Session{a, b} {
		if _, err := s.ClearUnitAttentions(ctx, 0); err != nil {
			t.Fatalf("session after warm reset: %v", err)
		}
	}
	// Cold reset: the response comes, then every session of the target ends.
	if c := tmf(a, scsi.TMFTargetColdReset, 0); c != pdu.TMFRespComplete {
		t.Fatalf("TARGET COLD RESET: %d", c)
	}
	for _, s := range []*initiator.Session{a, b} {
		select {
		case <-s.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("session survived a cold reset")
		}
	}
	// New logins work afterwards.
	dial(t, srv, nil)
}
