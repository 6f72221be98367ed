package iscsi_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/lunway/lunway/internal/testenv"
	"github.com/lunway/lunway/target/initiator"
	"github.com/lunway/lunway/target/iscsi"
	"github.com/lunway/lunway/target/iscsitest"
	"github.com/lunway/lunway/target/pdu"
	"github.com/lunway/lunway/target/scsi"
)

const (
	chapUser     = "alice"
	chapSecret   = "alice-secret-0123"
	mutualUser   = "lunway-target"
	mutualSecret = "target-secret-4567"
)

func chapServer(t *testing.T, cfg iscsi.CHAPConfig) *iscsitest.Server {
	return iscsitest.Start(t, &iscsitest.Options{
		Server: iscsi.Options{AuthFailureDelay: -1},
		Target: func(c *iscsi.TargetConfig) { c.CHAP = &cfg },
	})
}

func TestCHAP(t *testing.T) {
	oneWay := iscsi.CHAPConfig{User: chapUser, Secret: chapSecret}
	mutual := iscsi.CHAPConfig{User: chapUser, Secret: chapSecret, MutualUser: mutualUser, MutualSecret: mutualSecret}
	tests := []struct {
		name    string
		target  iscsi.CHAPConfig
		chap    *initiator.CHAP
		status  uint16 // expected login failure status, 0 for success
		authErr bool   // expected initiator-side mutual authentication failure
	}{
		{"one-way MD5", oneWay, &initiator.CHAP{User: chapUser, Secret: chapSecret, Algorithms: []int{5}}, 0, false},
		{"one-way SHA-256", oneWay, &initiator.CHAP{User: chapUser, Secret: chapSecret, Algorithms: []int{7}}, 0, false},
		{"one-way default list", oneWay, &initiator.CHAP{User: chapUser, Secret: chapSecret}, 0, false},
		{"wrong secret", oneWay, &initiator.CHAP{User: chapUser, Secret: "wrong-secret-xx"}, pdu.LoginAuthFailure, false},
		{"wrong user", oneWay, &initiator.CHAP{User: "mallory", Secret: chapSecret}, pdu.LoginAuthFailure, false},
		{"no credentials", oneWay, nil, pdu.LoginAuthFailure, false},
		{"unsupported algorithm only", oneWay, &initiator.CHAP{User: chapUser, Secret: chapSecret, Algorithms: []int{6}}, pdu.LoginAuthFailure, false},
		{"mutual", mutual, &initiator.CHAP{User: chapUser, Secret: chapSecret, TargetUser: mutualUser, TargetSecret: mutualSecret}, 0, false},
		{"mutual not asked", mutual, &initiator.CHAP{User: chapUser, Secret: chapSecret}, 0, false},
		{"mutual wrong target secret", mutual, &initiator.CHAP{User: chapUser, Secret: chapSecret, TargetUser: mutualUser, TargetSecret: "not-the-secret"}, 0, true},
		{"mutual wrong target user", mutual, &initiator.CHAP{User: chapUser, Secret: chapSecret, TargetUser: "other", TargetSecret: mutualSecret}, 0, true},
		{"mutual asked, none configured", oneWay, &initiator.CHAP{User: chapUser, Secret: chapSecret, TargetUser: mutualUser, TargetSecret: mutualSecret}, pdu.LoginAuthFailure, false},
		{"mutual required", iscsi.CHAPConfig{User: chapUser, Secret: chapSecret, MutualUser: mutualUser, MutualSecret: mutualSecret, RequireMutual: true},
			&initiator.CHAP{User: chapUser, Secret: chapSecret}, pdu.LoginAuthFailure, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := chapServer(t, tc.target)
			s, err := initiator.Dial(ctxT(t), srv.Addr, &initiator.Options{TargetName: srv.TargetName, CHAP: tc.chap})
			switch {
			case tc.authErr:
				if !errors.Is(err, initiator.ErrAuth) {
					t.Fatalf("got %v, want initiator.ErrAuth", err)
				}
			case tc.status != 0:
				var le *initiator.LoginError
				if !errors.As(err, &le) || le.Status != tc.status {
					t.Fatalf("got %v, want status 0x%04x", err, tc.status)
				}
				st := stats(srv, srv.TargetName)
				if st.LoginsAuthFailed != 1 || st.LoginsOK != 0 {
					t.Fatalf("stats %+v", st)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				s.ClearUnitAttentions(ctxT(t), 0)
				good(t, "tur after CHAP")(s.TestUnitReady(ctxT(t), 0))
				if st := stats(srv, srv.TargetName); st.LoginsOK != 1 {
					t.Fatalf("stats %+v", st)
				}
			}
		})
	}
}

func stats(srv *iscsitest.Server, name string) iscsi.TargetStats {
	for _, st := range srv.Stats() {
		if st.Name == name {
			return st
		}
	}
	return iscsi.TargetStats{}
}

func TestCHAPConfigValidation(t *testing.T) {
	st := scsi.NewTarget("iqn.2026-01.io.lunway:v", nil)
	srv, err := iscsi.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, c := range []iscsi.CHAPConfig{
		{User: "", Secret: "x"},
		{User: "u", Secret: ""},
		{User: "u", Secret: "same-secret-123", MutualUser: "t", MutualSecret: "same-secret-123"},
		{User: "u", Secret: "s", MutualUser: "t"},
		{User: "u", Secret: "s", RequireMutual: true},
	} {
		err := srv.AddTarget(iscsi.TargetConfig{Name: "iqn.2026-01.io.lunway:v", SCSI: st, CHAP: &c})
		if !errors.Is(err, iscsi.ErrInvalidOptions) {
			t.Errorf("%+v accepted: %v", c.User, err)
		}
	}
	// Secrets never print.
	c := iscsi.CHAPConfig{User: "u", Secret: "very-secret-value"}
	for _, s := range []string{c.Secret.String(), strings.ReplaceAll(fmtAll(c), " ", "")} {
		if strings.Contains(s, "very-secret-value") {
			t.Fatalf("secret printed: %s", s)
		}
	}
}

func TestDiscoveryCHAP(t *testing.T) {
	srv := iscsitest.Start(t, &iscsitest.Options{Server: iscsi.Options{AuthFailureDelay: -1,
		DiscoveryAuth: &iscsi.CHAPConfig{User: "disc", Secret: "discovery-secret-1"}}})
	if _, err := initiator.Discover(ctxT(t), srv.Addr, nil); err == nil {
		t.Fatal("discovery without CHAP succeeded")
	}
	ts, err := initiator.Discover(ctxT(t), srv.Addr, &initiator.Options{CHAP: &initiator.CHAP{User: "disc", Secret: "discovery-secret-1"}})
	if err != nil || len(ts) != 1 {
		t.Fatalf("discovery with CHAP: %v %v", ts, err)
	}
	// Normal sessions of a target without CHAP are unaffected.
	dial(t, srv, nil)
}

func TestACL(t *testing.T) {
	const (
		alice = "iqn.2026-01.com.example:alice"
		bob   = "iqn.2026-01.com.example:bob"
	)
	srv := iscsitest.Start(t, &iscsitest.Options{
		Server: iscsi.Options{AuthFailureDelay: -1},
		Target: func(c *iscsi.TargetConfig) { c.AllowedInitiators = []string{alice} },
	})
	add := func(name string, cfg func(*iscsi.TargetConfig)) {
		c := iscsi.TargetConfig{Name: name, SCSI: scsi.NewTarget(name, nil)}
		cfg(&c)
		if err := srv.AddTarget(c); err != nil {
			t.Fatal(err)
		}
	}
	add("iqn.2026-01.io.lunway:bobs", func(c *iscsi.TargetConfig) { c.AllowedInitiators = []string{bob} })
	add("iqn.2026-01.io.lunway:open", func(c *iscsi.TargetConfig) {})
	add("iqn.2026-01.io.lunway:v4net", func(c *iscsi.TargetConfig) {
		c.AllowedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	add("iqn.2026-01.io.lunway:elsewhere", func(c *iscsi.TargetConfig) {
		c.AllowedNetworks = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	})
	ctx := ctxT(t)
	names := func(ts []initiator.Target) string {
		var n []string
		for _, t := range ts {
			n = append(n, strings.TrimPrefix(t.Name, "iqn.2026-01.io.lunway:"))
		}
		return strings.Join(n, ",")
	}
	for _, tc := range []struct{ who, want string }{
		{alice, "open,test,v4net"},
		{bob, "bobs,open,v4net"},
	} {
		ts, err := initiator.Discover(ctx, srv.Addr, &initiator.Options{InitiatorName: tc.who})
		if err != nil {
			t.Fatal(err)
		}
		if got := names(ts); got != tc.want {
			t.Errorf("%s discovers %s, want %s", tc.who, got, tc.want)
		}
	}
	login := func(who, target string) error {
		s, err := initiator.Dial(ctx, srv.Addr, &initiator.Options{InitiatorName: who, TargetName: target})
		if err == nil {
			s.Close()
		}
		return err
	}
	denied := func(err error) bool {
		var le *initiator.LoginError
		return errors.As(err, &le) && le.Status == pdu.LoginAuthorizationFailure
	}
	if err := login(alice, srv.TargetName); err != nil {
		t.Errorf("alice on test: %v", err)
	}
	if err := login(bob, srv.TargetName); !denied(err) {
		t.Errorf("bob on test: %v, want authorization failure", err)
	}
	if err := login(strings.ToUpper(alice[:3])+alice[3:], srv.TargetName); err != nil {
		t.Errorf("names compare case-insensitively: %v", err)
	}
	if err := login(bob, "iqn.2026-01.io.lunway:v4net"); err != nil {
		t.Errorf("bob on v4net: %v", err)
	}
	if err := login(bob, "iqn.2026-01.io.lunway:elsewhere"); !denied(err) {
		t.Errorf("bob on elsewhere: %v, want authorization failure", err)
	}
	if st := stats(srv, srv.TargetName); st.LoginsDenied != 1 || st.LoginsOK != 2 {
		t.Errorf("stats %+v", st)
	}
	// IPv6 source networks.
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	add("iqn.2026-01.io.lunway:v6", func(c *iscsi.TargetConfig) {
		c.AllowedNetworks = []netip.Prefix{netip.MustParsePrefix("::1/128")}
	})
	go srv.ServePortalGroup(ln, 1)
	s, err := initiator.Dial(ctx, ln.Addr().String(), &initiator.Options{TargetName: "iqn.2026-01.io.lunway:v6"})
	if err != nil {
		t.Fatalf("IPv6 login: %v", err)
	}
	s.Close()
	if err := login(alice, "iqn.2026-01.io.lunway:v6"); !denied(err) {
		t.Errorf("IPv4 login to an IPv6-only target: %v", err)
	}
}

// TestLibiscsiCHAPAndACL drives CHAP and ACLs with libiscsi's tools.
func TestLibiscsiCHAPAndACL(t *testing.T) {
	inq := testenv.NeedCommand(t, "iscsi-inq", "libiscsi-bin")
	ls := testenv.NeedCommand(t, "iscsi-ls", "libiscsi-bin")
	const other = "iqn.2026-01.com.example:other"
	srv := iscsitest.Start(t, &iscsitest.Options{
		Server: iscsi.Options{AuthFailureDelay: -1},
		Target: func(c *iscsi.TargetConfig) {
			c.CHAP = &iscsi.CHAPConfig{User: chapUser, Secret: chapSecret, MutualUser: mutualUser, MutualSecret: mutualSecret}
			c.AllowedInitiators = []string{"iqn.2026-01.io.lunway:libiscsi"}
		},
	})
	if err := srv.AddTarget(iscsi.TargetConfig{Name: "iqn.2026-01.io.lunway:others", SCSI: scsi.NewTarget("x", nil),
		AllowedInitiators: []string{other}}); err != nil {
		t.Fatal(err)
	}
	run := func(bin string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		return string(out), err
	}
	url := func(user, pass, query string) string {
		u := "iscsi://" + user + "%" + pass + "@" + srv.Addr + "/" + srv.TargetName + "/0"
		if query != "" {
			u += "?" + query
		}
		return u
	}
	const ini = "iqn.2026-01.io.lunway:libiscsi"
	if out, err := run(inq, "-i", ini, url(chapUser, chapSecret, "")); err != nil || !strings.Contains(out, "LUNWAY") {
		t.Errorf("iscsi-inq with the right secret: %v\n%s", err, out)
	}
	if out, err := run(inq, "-i", ini, url(chapUser, "wrong-secret-xyz", "")); err == nil {
		t.Errorf("iscsi-inq with a wrong secret succeeded:\n%s", out)
	}
	if out, err := run(inq, "-i", ini, url(chapUser, chapSecret, "target_user="+mutualUser+"&target_password="+mutualSecret)); err != nil {
		t.Errorf("iscsi-inq with mutual CHAP: %v\n%s", err, out)
	}
	if out, err := run(inq, "-i", ini, url(chapUser, chapSecret, "target_user="+mutualUser+"&target_password=bad-target-secret")); err == nil {
		t.Errorf("iscsi-inq accepted a target with the wrong mutual secret:\n%s", out)
	}
	if out, err := run(inq, "-i", other, url(chapUser, chapSecret, "")); err == nil {
		t.Errorf("iscsi-inq from a denied initiator succeeded:\n%s", out)
	}
	qimg := testenv.NeedQEMU(t, "qemu-img")
	qinfo := func(secret string) (string, error) {
		return run(qimg, "info", "--object", "secret,id=sec0,data="+secret, "--image-opts",
			"driver=iscsi,transport=tcp,portal="+srv.Addr+",target="+srv.TargetName+",lun=0,user="+chapUser+
				",password-secret=sec0,initiator-name="+ini)
	}
	if out, err := qinfo(chapSecret); err != nil || !strings.Contains(out, "virtual size") {
		t.Errorf("qemu-img info with the right secret: %v\n%s", err, out)
	}
	if out, err := qinfo("wrong-secret-xyz"); err == nil {
		t.Errorf("qemu-img info with a wrong secret succeeded:\n%s", out)
	}
	// Discovery filtering by initiator name.
	portal := "iscsi://" + srv.Addr
	out, err := run(ls, "-i", ini, portal)
	if err != nil || !strings.Contains(out, srv.TargetName) || strings.Contains(out, "lunway:others") {
		t.Errorf("iscsi-ls as %s: %v\n%s", ini, err, out)
	}
	out, err = run(ls, "-i", other, portal)
	if err != nil || strings.Contains(out, srv.TargetName) || !strings.Contains(out, "lunway:others") {
		t.Errorf("iscsi-ls as %s: %v\n%s", other, err, out)
	}
}

func fmtAll(c iscsi.CHAPConfig) string {
	return strings.Join([]string{fmtV(c), fmtPlusV(c), fmtSharpV(c)}, "|")
}

// TestFailedLoginDelay checks that repeated failures from one address are
// answered more and more slowly, and that a success resets the delay.
func TestFailedLoginDelay(t *testing.T) {
	const base = 100 * time.Millisecond
	srv := iscsitest.Start(t, &iscsitest.Options{
		Server: iscsi.Options{AuthFailureDelay: base},
		Target: func(c *iscsi.TargetConfig) { c.CHAP = &iscsi.CHAPConfig{User: chapUser, Secret: chapSecret} },
	})
	try := func(secret string) (time.Duration, error) {
		start := time.Now()
		s, err := initiator.Dial(ctxT(t), srv.Addr, &initiator.Options{TargetName: srv.TargetName,
			CHAP: &initiator.CHAP{User: chapUser, Secret: secret}})
		if err == nil {
			s.Close()
		}
		return time.Since(start), err
	}
	for i, min := range []time.Duration{base, 2 * base, 4 * base} {
		d, err := try("wrong-secret-xyz")
		if err == nil || d < min {
			t.Fatalf("failure %d answered after %v (err %v), want at least %v", i+1, d, err, min)
		}
	}
	if _, err := try(chapSecret); err != nil {
		t.Fatal(err)
	}
	if d, _ := try("wrong-secret-xyz"); d >= 2*base+base/2 {
		t.Fatalf("delay not reset by a successful login: %v", d)
	}
}
