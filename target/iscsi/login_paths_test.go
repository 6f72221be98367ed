package iscsi_test

import (
	"testing"

	"github.com/lunway/lunway/target/initiator"
	"github.com/lunway/lunway/target/iscsi"
	"github.com/lunway/lunway/target/iscsitest"
	"github.com/lunway/lunway/target/pdu"
)

// TestLoginStagePaths logs in through the stage sequences RFC 7143 allows.
func TestLoginStagePaths(t *testing.T) {
	srv := iscsitest.Start(t, &iscsitest.Options{Server: iscsi.Options{AuthFailureDelay: -1}})
	chapSrv := iscsitest.Start(t, &iscsitest.Options{Server: iscsi.Options{AuthFailureDelay: -1},
		Target: func(c *iscsi.TargetConfig) { c.CHAP = &iscsi.CHAPConfig{User: "u", Secret: "some-long-secret"} }})
	names := "InitiatorName=iqn.2026-01.io.lunway:paths\x00TargetName=" + srv.TargetName + "\x00"
	tests := []struct {
		name   string
		srv    *iscsitest.Server
		req    pdu.LoginRequest
		text   string
		status uint16
		final  bool
	}{
		{"security straight to full feature", srv, pdu.LoginRequest{Transit: true, CSG: 0, NSG: 3},
			names + "AuthMethod=None\x00MaxRecvDataSegmentLength=65536\x00", 0, true},
		{"operational stage first", srv, pdu.LoginRequest{Transit: true, CSG: 1, NSG: 3},
			names + "HeaderDigest=None\x00", 0, true},
		{"operational stage first with CHAP required", chapSrv, pdu.LoginRequest{Transit: true, CSG: 1, NSG: 3},
			"InitiatorName=iqn.2026-01.io.lunway:paths\x00TargetName=" + chapSrv.TargetName + "\x00", pdu.LoginAuthFailure, false},
		{"transit backwards", srv, pdu.LoginRequest{Transit: true, CSG: 1, NSG: 0}, names, pdu.LoginInitiatorError, false},
		{"CSG full feature", srv, pdu.LoginRequest{CSG: 3}, names, pdu.LoginInitiatorError, false},
		{"CHAP keys without CHAP", srv, pdu.LoginRequest{Transit: true, CSG: 0, NSG: 1},
			names + "AuthMethod=None\x00CHAP_A=5\x00", pdu.LoginInitiatorError, false},
		{"AuthMethod CHAP only on an open target", srv, pdu.LoginRequest{Transit: true, CSG: 0, NSG: 1},
			names + "AuthMethod=CHAP\x00", pdu.LoginAuthFailure, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := rawLogin(t, tc.srv.Addr, tc.req, tc.text)
			if resp.Status != tc.status {
				t.Fatalf("status 0x%04x, want 0x%04x", resp.Status, tc.status)
			}
			if tc.final && (!resp.Transit || resp.NSG != pdu.StageFullFeature || resp.TSIH == 0) {
				t.Fatalf("not final: %+v", resp)
			}
		})
	}
}

// TestDiscoverySessionLimits: a discovery session may only use Text, NOP
// and Logout.
func TestDiscoverySessionLimits(t *testing.T) {
	srv := iscsitest.Start(t, nil)
	s, err := initiator.Dial(ctxT(t), srv.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var b pdu.BHS
	c := pdu.SCSICommand{Immediate: true, Final: true, ITT: s.NextITT()}
	c.Encode(&b)
	s.WriteRaw(pdu.AppendPDU(nil, &b, nil, nil, false, false))
	expectReject(t, s, pdu.RejectProtocolError, &b)
	if _, err := s.Nop(ctxT(t), nil); err != nil {
		t.Fatal(err)
	}
	ts, err := s.SendTargets(ctxT(t), "All")
	if err != nil || len(ts) != 1 {
		t.Fatalf("%v %v", ts, err)
	}
	if ss := srv.Sessions(); len(ss) != 1 || !ss[0].Discovery {
		t.Fatalf("sessions %+v", ss)
	}
	if err := s.Logout(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}
