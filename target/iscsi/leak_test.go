package iscsi_test

import (
	"context"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lunway/lunway/blockdev/mem"
	"github.com/lunway/lunway/target/initiator"
	"github.com/lunway/lunway/target/iscsi"
	"github.com/lunway/lunway/target/scsi"
)

// TestNoGoroutineLeak runs sessions (normal, discovery, failed logins)
// through a server and checks that after Close no goroutine of the server
// or of the initiator is left.
func TestNoGoroutineLeak(t *testing.T) {
	srv, err := iscsi.NewServer(&iscsi.Options{NopInterval: 50 * time.Millisecond, AuthFailureDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	st := scsi.NewTarget("iqn.2026-01.io.lunway:leak", nil)
	d, _ := mem.New(1<<20, nil)
	lu, _ := scsi.NewLU(scsi.LUOptions{Device: d})
	st.AddLU(0, lu)
	srv.AddTarget(iscsi.TargetConfig{Name: "iqn.2026-01.io.lunway:leak", SCSI: st})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var sessions []*initiator.Session
	for i := 0; i < 4; i++ {
		s, err := initiator.Dial(ctx, ln.Addr().String(), &initiator.Options{TargetName: "iqn.2026-01.io.lunway:leak",
			ISID: [6]byte{0x80, byte(i)}})
		if err != nil {
			t.Fatal(err)
		}
		s.ClearUnitAttentions(ctx, 0)
		s.Write16(ctx, 0, 0, 512, make([]byte, 4096), false)
		sessions = append(sessions, s)
	}
	initiator.Discover(ctx, ln.Addr().String(), nil)
	initiator.Dial(ctx, ln.Addr().String(), &initiator.Options{TargetName: "iqn.2026-01.io.lunway:none"})
	sessions[0].Logout(ctx)
	srv.Close()
	if err := <-served; err != iscsi.ErrServerClosed {
		t.Fatalf("Serve: %v", err)
	}
	for _, s := range sessions {
		s.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		var leaked []string
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "target/iscsi.") || strings.Contains(g, "target/initiator.") {
				if !strings.Contains(g, "TestNoGoroutineLeak") {
					leaked = append(leaked, g)
				}
			}
		}
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left after Close:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
