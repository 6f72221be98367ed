package iscsi_test

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/lunway/lunway/target/initiator"
	"github.com/lunway/lunway/target/iscsitest"
	"github.com/lunway/lunway/target/pdu"
)

// rawPDU encodes a PDU with the session's digests.
func rawPDU(s *initiator.Session, b *pdu.BHS, data []byte) []byte {
	p := s.Params()
	return pdu.AppendPDU(nil, b, nil, data, p.HeaderDigest, p.DataDigest)
}

func nopOut(s *initiator.Session, immediate bool, cmdSN uint32) *pdu.BHS {
	var b pdu.BHS
	(&pdu.NOPOut{Immediate: immediate, ITT: s.NextITT(), TTT: pdu.ReservedTag, CmdSN: cmdSN, ExpStatSN: s.ExpStatSN()}).Encode(&b)
	return &b
}

// expectReject waits for a Reject with reason and checks that it carries
// the rejected header.
func expectReject(t *testing.T, s *initiator.Session, reason uint8, rejected *pdu.BHS) {
	t.Helper()
	p := expectPDU(t, s, pdu.OpReject)
	var r pdu.Reject
	r.Decode(&p.BHS)
	if r.Reason != reason {
		t.Fatalf("Reject reason 0x%02x, want 0x%02x", r.Reason, reason)
	}
	if rejected != nil && (len(p.Data) < pdu.BHSLen || p.Data[0]&0x3f != rejected[0]&0x3f ||
		!bytes.Equal(p.Data[16:20], rejected[16:20])) {
		t.Fatalf("Reject data %x does not carry the rejected header %x", p.Data, rejected[:])
	}
}

func TestHostileInput(t *testing.T) {
	type step func(t *testing.T, s *initiator.Session)
	tests := []struct {
		name    string
		opts    initiator.Options
		srvOpts iscsitest.Options
		run     step
		// drops: the target must drop the connection.
		drops bool
	}{
		{name: "unknown opcode", run: func(t *testing.T, s *initiator.Session) {
			b := nopOut(s, true, 0)
			b[0] = 0x40 | 0x1c
			s.WriteRaw(rawPDU(s, b, nil))
			expectReject(t, s, pdu.RejectNotSupported, b)
		}},
		{name: "target opcode from initiator", run: func(t *testing.T, s *initiator.Session) {
			var b pdu.BHS
			(&pdu.SCSIResponse{ITT: 5}).Encode(&b)
			s.WriteRaw(rawPDU(s, &b, nil))
			expectReject(t, s, pdu.RejectNotSupported, &b)
		}},
		{name: "SNACK at ERL 0", run: func(t *testing.T, s *initiator.Session) {
			var b pdu.BHS
			(&pdu.SNACK{Type: pdu.SNACKStatus, ITT: s.NextITT(), TTT: pdu.ReservedTag}).Encode(&b)
			s.WriteRaw(rawPDU(s, &b, nil))
			expectReject(t, s, pdu.RejectProtocolError, &b)
		}},
		{name: "data beyond MaxRecvDataSegmentLength", srvOpts: iscsitest.Options{}, run: func(t *testing.T, s *initiator.Session) {
			b := nopOut(s, true, 0)
			s.WriteRaw(rawPDU(s, b, make([]byte, s.Params().TargetMaxRecvDataSegmentLength+4)))
			expectReject(t, s, pdu.RejectProtocolError, b)
		}},
		{name: "immediate data on a read", run: func(t *testing.T, s *initiator.Session) {
			var b pdu.BHS
			c := pdu.SCSICommand{Immediate: true, Final: true, Read: true, ITT: s.NextITT(), ExpectedDataTransferLength: 512}
			c.CDB[0] = 0x28
			c.CDB[8] = 1
			c.Encode(&b)
			s.WriteRaw(rawPDU(s, &b, make([]byte, 512)))
			expectReject(t, s, pdu.RejectProtocolError, &b)
		}},
		{name: "immediate data beyond expected length", run: func(t *testing.T, s *initiator.Session) {
			var b pdu.BHS
			c := pdu.SCSICommand{Immediate: true, Final: true, Write: true, ITT: s.NextITT(), ExpectedDataTransferLength: 512}
			c.CDB[0] = 0x2a
			c.CDB[8] = 1
			c.Encode(&b)
			s.WriteRaw(rawPDU(s, &b, make([]byte, 1024)))
			expectReject(t, s, pdu.RejectProtocolError, &b)
		}},
		{name: "bad AHS", run: func(t *testing.T, s *initiator.Session) {
			var b pdu.BHS
			c := pdu.SCSICommand{Immediate: true, Final: true, ITT: s.NextITT()}
			c.Encode(&b)
			ahs := []byte{0, 1, 9, 0} // unknown AHS type
			s.WriteRaw(pdu.AppendPDU(nil, &b, ahs, nil, s.Params().HeaderDigest, s.Params().DataDigest))
			expectReject(t, s, pdu.RejectInvalidPDUField, &b)
		}},
		{name: "Data-Out for an unknown task is ignored", run: func(t *testing.T, s *initiator.Session) {
			var b pdu.BHS
			(&pdu.DataOut{Final: true, ITT: 0xdead, TTT: 0xbeef}).Encode(&b)
			s.WriteRaw(rawPDU(s, &b, make([]byte, 512)))
		}},
		{name: "CmdSN above the window is ignored", run: func(t *testing.T, s *initiator.Session) {
			_, _, maxSN := s.CmdSNs()
			b := nopOut(s, false, maxSN+1)
			s.WriteRaw(rawPDU(s, b, nil))
			select {
			case p := <-s.Unsolicited():
				t.Fatalf("answer to an out-of-window command: %v", p.BHS.Opcode())
			case <-time.After(200 * time.Millisecond):
			}
		}},
		{name: "CmdSN below the window is ignored", run: func(t *testing.T, s *initiator.Session) {
			_, exp, _ := s.CmdSNs()
			b := nopOut(s, false, exp-10)
			s.WriteRaw(rawPDU(s, b, nil))
			select {
			case p := <-s.Unsolicited():
				t.Fatalf("answer to an out-of-window command: %v", p.BHS.Opcode())
			case <-time.After(200 * time.Millisecond):
			}
		}},
		{name: "data digest error on immediate data", opts: initiator.Options{DataDigest: true}, run: func(t *testing.T, s *initiator.Session) {
			var b pdu.BHS
			c := pdu.SCSICommand{Immediate: true, Final: true, Write: true, ITT: s.NextITT(), ExpectedDataTransferLength: 512}
			c.CDB[0] = 0x2a
			c.CDB[5] = 200 // LBA 200: must stay untouched
			c.CDB[8] = 1
			c.Encode(&b)
			wire := rawPDU(s, &b, bytes.Repeat([]byte{0xee}, 512))
			wire[len(wire)-1] ^= 0xff
			s.WriteRaw(wire)
			expectReject(t, s, pdu.RejectDataDigest, &b)
		}},
		{name: "data digest error on a NOP-Out", opts: initiator.Options{DataDigest: true}, run: func(t *testing.T, s *initiator.Session) {
			b := nopOut(s, true, 0)
			wire := rawPDU(s, b, []byte("ping"))
			wire[len(wire)-1] ^= 0xff
			s.WriteRaw(wire)
			expectReject(t, s, pdu.RejectDataDigest, b)
			select {
			case p := <-s.Unsolicited():
				t.Fatalf("answer to a rejected NOP-Out: %v", p.BHS.Opcode())
			case <-time.After(100 * time.Millisecond):
			}
		}},
		{name: "header digest error drops the connection", opts: initiator.Options{HeaderDigest: true}, drops: true,
			run: func(t *testing.T, s *initiator.Session) {
				b := nopOut(s, true, 0)
				wire := rawPDU(s, b, nil)
				wire[pdu.BHSLen] ^= 0xff
				s.WriteRaw(wire)
			}},
		{name: "truncated PDU then close", drops: true, run: func(t *testing.T, s *initiator.Session) {
			b := nopOut(s, true, 0)
			s.WriteRaw(rawPDU(s, b, nil)[:20])
			s.Close()
		}},
		{name: "oversized AHS length drops", drops: true, run: func(t *testing.T, s *initiator.Session) {
			var b pdu.BHS
			(&pdu.SCSICommand{Immediate: true, Final: true, ITT: s.NextITT()}).Encode(&b)
			b[4] = 255
			wire := append(rawPDU(s, &b, nil)[:pdu.BHSLen], make([]byte, 1020)...)
			wire[4] = 255
			s.WriteRaw(wire)
		}},
		{name: "garbage after login", drops: true, run: func(t *testing.T, s *initiator.Session) {
			garbage := randBytes(99, 4096)
			for i := 0; i < len(garbage); i += pdu.BHSLen {
				garbage[i+4] = 0 // keep AHS lengths sane so that some PDUs parse
			}
			s.WriteRaw(garbage)
			s.Close()
		}},
	}
	srv := iscsitest.Start(t, nil)
	ctx := ctxT(t)
	// A bystander session whose data must survive everything.
	by := dial(t, srv, &initiator.Options{ISID: [6]byte{0x80, 0xbb}})
	known := randBytes(42, 64<<10)
	good(t, "bystander write")(by.Write16(ctx, 0, 1000, 512, known, true))
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			o.ISID = [6]byte{0x80, 0, 0, 0, 1, byte(i)}
			s := dial(t, srv, &o)
			tc.run(t, s)
			if tc.drops {
				select {
				case <-s.Done():
				case <-time.After(5 * time.Second):
					t.Fatal("target did not drop the connection")
				}
			} else {
				// The session goes on: a NOP and a command work.
				if _, err := s.Nop(ctx, []byte("still there")); err != nil {
					t.Fatalf("session after hostile input: %v", err)
				}
				if tc.name != "CmdSN above the window is ignored" && tc.name != "CmdSN below the window is ignored" {
					good(t, "tur")(s.TestUnitReady(ctx, 0))
				}
			}
			// The bystander and its data are intact.
			buf := make([]byte, len(known))
			good(t, "bystander read")(by.Read16(ctx, 0, 1000, 512, buf))
			if !bytes.Equal(buf, known) {
				t.Fatal("bystander data changed")
			}
			zero := make([]byte, 512)
			good(t, "read LBA 200")(by.Read16(ctx, 0, 200, 512, zero))
			if !bytes.Equal(zero, make([]byte, 512)) {
				t.Fatal("a rejected write reached storage")
			}
		})
	}
	// Garbage before login: the target closes the connection.
	for _, g := range [][]byte{randBytes(5, 48), []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n" + string(make([]byte, 40)))} {
		nc, err := net.Dial("tcp", srv.Addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.Write(g)
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		var rerr error
		for rerr == nil {
			_, rerr = nc.Read(make([]byte, 512))
		}
		if ne, ok := rerr.(net.Error); ok && ne.Timeout() {
			t.Errorf("garbage %.10q before login: connection not closed", g)
		}
		nc.Close()
	}
	good(t, "bystander tur")(by.TestUnitReady(ctx, 0))
}
