package iscsi_test

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/lunway/lunway/blockdev/mem"
	"github.com/lunway/lunway/target/initiator"
	"github.com/lunway/lunway/target/iscsi"
	"github.com/lunway/lunway/target/iscsitest"
	"github.com/lunway/lunway/target/scsi"
)

// TestManySessions runs 64 concurrent sessions over 4 targets, each
// writing and verifying its own range, then checks the counters.
func TestManySessions(t *testing.T) {
	srv := iscsitest.Start(t, nil)
	targets := []string{srv.TargetName}
	for i := 1; i < 4; i++ {
		name := fmt.Sprintf("iqn.2026-01.io.lunway:t%d", i)
		st := scsi.NewTarget(name, nil)
		d, _ := mem.New(64<<20, nil)
		lu, _ := scsi.NewLU(scsi.LUOptions{Device: d})
		st.AddLU(0, lu)
		if err := srv.AddTarget(iscsi.TargetConfig{Name: name, SCSI: st}); err != nil {
			t.Fatal(err)
		}
		targets = append(targets, name)
	}
	ctx := ctxT(t)
	const sessions = 64
	var wg sync.WaitGroup
	ss := make([]*initiator.Session, sessions)
	for i := range ss {
		s, err := initiator.Dial(ctx, srv.Addr, &initiator.Options{TargetName: targets[i%4],
			InitiatorName: fmt.Sprintf("iqn.2026-01.io.lunway:host%d", i)})
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		ss[i] = s
		defer s.Close()
		if _, err := s.ClearUnitAttentions(ctx, 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(srv.Sessions()); n != sessions {
		t.Fatalf("%d sessions", n)
	}
	for i, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := randBytes(uint64(i), 128<<10)
			lba := uint64(i/4) * 256
			for r := 0; r < 8; r++ {
				res, err := s.Write16(ctx, 0, lba, 512, data, false)
				if err != nil || res.Err() != nil {
					t.Errorf("session %d write: %v", i, err)
					return
				}
				buf := make([]byte, len(data))
				res, err = s.Read16(ctx, 0, lba, 512, buf)
				if err != nil || res.Err() != nil || !bytes.Equal(buf, data) {
					t.Errorf("session %d read back: %v", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var total iscsi.TargetStats
	for _, st := range srv.Stats() {
		total.Sessions += st.Sessions
		total.Commands += st.Commands
		total.LoginsOK += st.LoginsOK
	}
	if total.Sessions != sessions || total.LoginsOK != sessions || total.Commands < sessions*16 {
		t.Fatalf("stats %+v", total)
	}
	for _, s := range ss {
		if err := s.Logout(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return len(srv.Sessions()) == 0 })
	after := srv.Stats()
	var cmds uint64
	for _, st := range after {
		cmds += st.Commands
	}
	if cmds != total.Commands {
		t.Fatalf("commands after logout %d, before %d (counters lost at session end)", cmds, total.Commands)
	}
}
