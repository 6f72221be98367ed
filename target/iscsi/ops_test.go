package iscsi_test

import (
	"testing"
	"time"

	"github.com/lunway/lunway/target/initiator"
	"github.com/lunway/lunway/target/iscsi"
	"github.com/lunway/lunway/target/iscsitest"
)

func TestSessionsStatsCloseSession(t *testing.T) {
	srv := iscsitest.Start(t, &iscsitest.Options{Target: func(c *iscsi.TargetConfig) { c.Alias = "disk-one" }})
	s := dial(t, srv, &initiator.Options{InitiatorName: "iqn.2026-01.io.lunway:ops"})
	if s.TargetAlias() != "disk-one" {
		t.Fatalf("alias %q", s.TargetAlias())
	}
	ctx := ctxT(t)
	good(t, "write")(s.Write16(ctx, 0, 0, 512, make([]byte, 8192), false))
	ss := srv.Sessions()
	if len(ss) != 1 {
		t.Fatalf("%d sessions", len(ss))
	}
	si := ss[0]
	if si.InitiatorName != "iqn.2026-01.io.lunway:ops" || si.Target != srv.TargetName || si.TSIH != s.TSIH() ||
		si.ISID != s.ISID() || si.PortalGroup != 1 || si.LocalAddr != srv.Addr || si.RemoteAddr == "" ||
		time.Since(si.Start) > time.Minute || si.Discovery {
		t.Fatalf("session info %+v", si)
	}
	st := stats(srv, srv.TargetName)
	if st.Sessions != 1 || st.LoginsOK != 1 || st.Commands < 2 || st.PDUsIn < 2 || st.PDUsOut < 2 ||
		st.BytesIn < 8192 || st.BytesOut < 48*2 {
		t.Fatalf("stats %+v", st)
	}
	if err := srv.CloseSession(si.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("CloseSession did not end the session")
	}
	if len(srv.Sessions()) != 0 {
		t.Fatal("session still listed")
	}
	if err := srv.CloseSession(si.ID); err == nil {
		t.Fatal("closing a closed session succeeded")
	}
	after := stats(srv, srv.TargetName)
	if after.Sessions != 0 || after.Commands != st.Commands || after.BytesIn < st.BytesIn {
		t.Fatalf("stats after close %+v (before %+v)", after, st)
	}
}
