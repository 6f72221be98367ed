package iscsi_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/lunway/lunway/target/initiator"
	"github.com/lunway/lunway/target/iscsi"
	"github.com/lunway/lunway/target/iscsitest"
	"github.com/lunway/lunway/target/pdu"
	"github.com/lunway/lunway/target/scsi"
)

// TestSendTargetsContinuation lists more targets than fit in one PDU of
// the initiator's MaxRecvDataSegmentLength: the answer spans several Text
// Responses (C bit, TTT).
func TestSendTargetsContinuation(t *testing.T) {
	srv := iscsitest.Start(t, nil)
	for i := 0; i < 40; i++ {
		name := fmt.Sprintf("iqn.2026-01.io.lunway:many-%02d", i)
		if err := srv.AddTarget(iscsi.TargetConfig{Name: name, SCSI: scsi.NewTarget(name, nil)}); err != nil {
			t.Fatal(err)
		}
	}
	ts, err := initiator.Discover(ctxT(t), srv.Addr, &initiator.Options{MaxRecvDataSegmentLength: 512})
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 41 {
		t.Fatalf("%d targets", len(ts))
	}
	for _, tg := range ts {
		if len(tg.Addresses) != 1 {
			t.Fatalf("%s: addresses %v", tg.Name, tg.Addresses)
		}
	}
	// Removing a target removes it from discovery and ends its sessions.
	s := dial(t, srv, nil)
	if err := srv.RemoveTarget(srv.TargetName); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("session of a removed target survived")
	}
	ts, _ = initiator.Discover(ctxT(t), srv.Addr, nil)
	if len(ts) != 40 {
		t.Fatalf("%d targets after removal", len(ts))
	}
}

// TestLoginTextContinuation sends the first login text in three PDUs with
// the C bit; the target asks for the rest with empty responses.
func TestLoginTextContinuation(t *testing.T) {
	srv := iscsitest.Start(t, nil)
	nc, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	text := []byte("InitiatorName=iqn.2026-01.io.lunway:cont\x00TargetName=" + srv.TargetName +
		"\x00SessionType=Normal\x00AuthMethod=None\x00")
	rd := pdu.NewReader(nc, pdu.Limits{})
	parts := [][]byte{text[:10], text[10:50], text[50:]}
	for i, part := range parts {
		last := i == len(parts)-1
		var b pdu.BHS
		(&pdu.LoginRequest{Transit: last, Continue: !last, CSG: 0, NSG: 1, ISID: [6]byte{0x80, 5},
			CmdSN: 1}).Encode(&b)
		if !last {
			b[1] &^= 3 // NSG is reserved without T
		}
		if _, err := nc.Write(pdu.AppendPDU(nil, &b, nil, part, false, false)); err != nil {
			t.Fatal(err)
		}
		p, err := rd.ReadPDU()
		if err != nil {
			t.Fatal(err)
		}
		var resp pdu.LoginResponse
		if err := resp.Decode(&p.BHS); err != nil || resp.Status != 0 {
			t.Fatalf("part %d: status 0x%04x %v", i, resp.Status, err)
		}
		if !last && (len(p.Data) != 0 || resp.Transit) {
			t.Fatalf("part %d: expected an empty response, got %q T=%v", i, p.Data, resp.Transit)
		}
		if last {
			kvs, err := pdu.ParseText(p.Data)
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := pdu.Lookup(kvs, "AuthMethod"); v != "None" || !resp.Transit || resp.NSG != 1 {
				t.Fatalf("final: %q T=%v NSG=%d", kvs, resp.Transit, resp.NSG)
			}
		}
	}
}

// TestTextRequestContinuation sends SendTargets split over two Text
// Requests with the C bit; unknown keys are answered NotUnderstood and
// login-only keys Reject.
func TestTextRequestContinuation(t *testing.T) {
	srv := iscsitest.Start(t, nil)
	s := dial(t, srv, nil)
	itt := s.NextITT()
	text := []byte("X-com.example.k=1\x00SendTargets=" + srv.TargetName + "\x00InitialR2T=No\x00")
	send := func(part []byte, cont bool, ttt uint32) *pdu.PDU {
		var b pdu.BHS
		(&pdu.TextRequest{Immediate: true, Final: !cont, Continue: cont, ITT: itt, TTT: ttt,
			ExpStatSN: s.ExpStatSN()}).Encode(&b)
		s.WriteRaw(pdu.AppendPDU(nil, &b, nil, part, false, false))
		return expectPDU(t, s, pdu.OpTextResp)
	}
	p := send(text[:20], true, pdu.ReservedTag)
	var tr pdu.TextResponse
	tr.Decode(&p.BHS)
	if len(p.Data) != 0 || tr.TTT == pdu.ReservedTag || tr.Final {
		t.Fatalf("first response: %+v %q", tr, p.Data)
	}
	p = send(text[20:], false, tr.TTT)
	tr.Decode(&p.BHS)
	if !tr.Final {
		t.Fatalf("final response: %+v", tr)
	}
	got := string(p.Data)
	for _, want := range []string{"X-com.example.k=NotUnderstood\x00", "TargetName=" + srv.TargetName + "\x00",
		"TargetAddress=" + srv.Addr + ",1\x00", "InitialR2T=Reject\x00"} {
		if !strings.Contains(got, want) {
			t.Errorf("answer %q lacks %q", got, want)
		}
	}
}
