package iscsi_test

import (
	"errors"
	"testing"
	"time"

	"github.com/lunway/lunway/target/initiator"
	"github.com/lunway/lunway/target/iscsi"
	"github.com/lunway/lunway/target/iscsitest"
	"github.com/lunway/lunway/target/pdu"
	"github.com/lunway/lunway/target/scsi"
)

// TestUpdateTarget: ACL and CHAP changes apply to new logins at once, the
// sessions already logged in keep working, counters carry over, and a
// later RemoveTarget still ends the sessions that predate the update.
func TestUpdateTarget(t *testing.T) {
	const (
		alice = "iqn.2026-01.com.example:alice"
		bob   = "iqn.2026-01.com.example:bob"
	)
	var base iscsi.TargetConfig
	srv := iscsitest.Start(t, &iscsitest.Options{
		Server: iscsi.Options{AuthFailureDelay: -1},
		Target: func(c *iscsi.TargetConfig) {
			c.AllowedInitiators = []string{alice}
			base = *c
		},
	})
	ctx := ctxT(t)
	login := func(who string, chap *initiator.CHAP) (*initiator.Session, error) {
		return initiator.Dial(ctx, srv.Addr, &initiator.Options{InitiatorName: who, TargetName: srv.TargetName, CHAP: chap})
	}
	status := func(err error) uint16 {
		var le *initiator.LoginError
		if errors.As(err, &le) {
			return le.Status
		}
		return 0
	}
	old := dial(t, srv, &initiator.Options{InitiatorName: alice})
	if _, err := login(bob, nil); status(err) != pdu.LoginAuthorizationFailure {
		t.Fatalf("bob before the update: %v", err)
	}

	// Allow only bob, with CHAP.
	upd := base
	upd.AllowedInitiators = []string{bob}
	upd.CHAP = &iscsi.CHAPConfig{User: "bob", Secret: "bob-secret-0123456"}
	upd.Alias = "renamed"
	if err := srv.UpdateTarget(upd); err != nil {
		t.Fatal(err)
	}
	good(t, "TUR on the session from before the update")(old.TestUnitReady(ctx, 0))
	if _, err := login(alice, nil); status(err) != pdu.LoginAuthorizationFailure {
		t.Fatalf("alice after the update: %v", err)
	}
	if _, err := login(bob, nil); status(err) != pdu.LoginAuthFailure {
		t.Fatalf("bob without CHAP after the update: %v", err)
	}
	s, err := login(bob, &initiator.CHAP{User: "bob", Secret: "bob-secret-0123456"})
	if err != nil {
		t.Fatalf("bob with CHAP: %v", err)
	}
	defer s.Close()
	if s.TargetAlias() != "renamed" {
		t.Errorf("alias %q", s.TargetAlias())
	}
	st := stats(srv, srv.TargetName)
	if st.Sessions != 2 || st.LoginsOK != 2 || st.LoginsDenied != 2 || st.LoginsAuthFailed != 1 {
		t.Errorf("stats after the update %+v", st)
	}

	// Errors: unknown target, another SCSI target, invalid settings.
	for name, cfg := range map[string]iscsi.TargetConfig{
		"unknown":    {Name: "iqn.2026-01.io.lunway:nope", SCSI: base.SCSI},
		"other scsi": {Name: base.Name, SCSI: scsi.NewTarget(base.Name, nil)},
		"bad name":   {Name: base.Name, SCSI: base.SCSI, AllowedInitiators: []string{"not a name"}},
	} {
		if err := srv.UpdateTarget(cfg); err == nil {
			t.Errorf("%s: UpdateTarget succeeded", name)
		}
	}
	if err := srv.UpdateTarget(iscsi.TargetConfig{Name: "iqn.2026-01.io.lunway:nope", SCSI: base.SCSI}); !errors.Is(err, iscsi.ErrNoSuchTarget) {
		t.Errorf("unknown target: %v", err)
	}

	// The session from before the update is on the current entry: removal
	// ends it, and its traffic is folded into the totals.
	if err := srv.RemoveTarget(srv.TargetName); err != nil {
		t.Fatal(err)
	}
	for _, sess := range []*initiator.Session{old, s} {
		select {
		case <-sess.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("RemoveTarget left a session running")
		}
	}
}

// TestUpdateTargetRace runs updates against logins and I/O (for -race).
func TestUpdateTargetRace(t *testing.T) {
	var base iscsi.TargetConfig
	srv := iscsitest.Start(t, &iscsitest.Options{Target: func(c *iscsi.TargetConfig) { base = *c }})
	ctx := ctxT(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 50; i++ {
			c := base
			if i%2 == 0 {
				c.Alias = "even"
			}
			if err := srv.UpdateTarget(c); err != nil {
				t.Error(err)
				return
			}
			srv.Stats()
		}
	}()
	for i := 0; i < 10; i++ {
		s, err := initiator.Dial(ctx, srv.Addr, &initiator.Options{TargetName: srv.TargetName})
		if err != nil {
			// A login that straddles an update may be refused as
			// "target removed"; anything else is a bug.
			var le *initiator.LoginError
			if !errors.As(err, &le) || le.Status != pdu.LoginTargetRemoved {
				t.Fatal(err)
			}
			continue
		}
		s.TestUnitReady(ctx, 0)
		s.Close()
	}
	<-done
}
