package iscsi_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/target/initiator"
	"github.com/lunway/lunway/target/iscsi"
	"github.com/lunway/lunway/target/iscsitest"
	"github.com/lunway/lunway/target/pdu"
	"github.com/lunway/lunway/target/scsi"
)

func randBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b
}

func mustGood(t *testing.T, what string, res *initiator.Result, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if err := res.Err(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func TestLoginNegotiation(t *testing.T) {
	tests := []struct {
		name   string
		srv    iscsi.Options
		ini    initiator.Options
		check  func(t *testing.T, p pdu.Params)
		answer map[string]string // keys the target must answer so
	}{
		{name: "defaults", check: func(t *testing.T, p pdu.Params) {
			want := pdu.Params{HeaderDigest: false, DataDigest: false, MaxRecvDataSegmentLength: 256 << 10,
				TargetMaxRecvDataSegmentLength: 256 << 10, MaxBurstLength: 1 << 20, FirstBurstLength: 64 << 10,
				InitialR2T: false, ImmediateData: true, MaxOutstandingR2T: 8, DataPDUInOrder: true,
				DataSequenceInOrder: true, DefaultTime2Wait: 0, DefaultTime2Retain: 0, ErrorRecoveryLevel: 0,
				MaxConnections: 1}
			if p != want {
				t.Fatalf("params\n got %+v\nwant %+v", p, want)
			}
		}},
		{name: "header digest", ini: initiator.Options{HeaderDigest: true},
			check: func(t *testing.T, p pdu.Params) {
				if !p.HeaderDigest || p.DataDigest {
					t.Fatalf("%+v", p)
				}
			}},
		{name: "data digest", ini: initiator.Options{DataDigest: true},
			check: func(t *testing.T, p pdu.Params) {
				if p.HeaderDigest || !p.DataDigest {
					t.Fatalf("%+v", p)
				}
			}},
		{name: "both digests", ini: initiator.Options{HeaderDigest: true, DataDigest: true},
			check: func(t *testing.T, p pdu.Params) {
				if !p.HeaderDigest || !p.DataDigest {
					t.Fatalf("%+v", p)
				}
			}},
		{name: "target limits win", srv: iscsi.Options{MaxBurstLength: 65536, FirstBurstLength: 8192, MaxOutstandingR2T: 2,
			MaxRecvDataSegmentLength: 16384},
			check: func(t *testing.T, p pdu.Params) {
				if p.MaxBurstLength != 65536 || p.FirstBurstLength != 8192 || p.MaxOutstandingR2T != 2 ||
					p.TargetMaxRecvDataSegmentLength != 16384 {
					t.Fatalf("%+v", p)
				}
			}},
		{name: "initiator limits win", ini: initiator.Options{MaxBurstLength: 4096, FirstBurstLength: 1024,
			MaxOutstandingR2T: 1, MaxRecvDataSegmentLength: 4096},
			check: func(t *testing.T, p pdu.Params) {
				if p.MaxBurstLength != 4096 || p.FirstBurstLength != 1024 || p.MaxOutstandingR2T != 1 ||
					p.MaxRecvDataSegmentLength != 4096 {
					t.Fatalf("%+v", p)
				}
			}},
		{name: "InitialR2T OR", srv: iscsi.Options{RequireInitialR2T: true},
			check: func(t *testing.T, p pdu.Params) {
				if !p.InitialR2T {
					t.Fatalf("%+v", p)
				}
			}},
		{name: "ImmediateData AND", srv: iscsi.Options{DisableImmediateData: true},
			check: func(t *testing.T, p pdu.Params) {
				if p.ImmediateData {
					t.Fatalf("%+v", p)
				}
			}},
		{name: "ImmediateData No from initiator", ini: initiator.Options{NoImmediateData: true, InitialR2T: true},
			check: func(t *testing.T, p pdu.Params) {
				if p.ImmediateData || !p.InitialR2T {
					t.Fatalf("%+v", p)
				}
			}},
		{name: "unknown and odd keys", ini: initiator.Options{Extra: []pdu.KV{
			{Key: "X-com.example.Foo", Value: "1"}, {Key: "IFMarker", Value: "Yes"}, {Key: "OFMarkInt", Value: "1~65535"},
			{Key: "TargetAlias", Value: "me"}}},
			answer: map[string]string{"X-com.example.Foo": "NotUnderstood", "IFMarker": "No",
				"OFMarkInt": "Irrelevant", "TargetAlias": "Irrelevant", "TargetPortalGroupTag": "1"}},
		{name: "out of range value rejected", ini: initiator.Options{Extra: []pdu.KV{{Key: "MaxConnections", Value: "0"}}},
			answer: map[string]string{"MaxConnections": "Reject"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := iscsitest.Start(t, &iscsitest.Options{Server: tc.srv})
			s := dial(t, srv, &tc.ini)
			p := s.Params()
			if tc.check != nil {
				tc.check(t, p)
			}
			for k, v := range tc.answer {
				got := ""
				for _, kv := range s.LoginAnswers() {
					if kv.Key == k {
						got = kv.Value
					}
				}
				if got != v {
					t.Errorf("answer %s=%q, want %q (all: %v)", k, got, v, s.LoginAnswers())
				}
			}
			sess := srv.Sessions()
			if len(sess) != 1 {
				t.Fatalf("%d sessions", len(sess))
			}
			sp := sess[0].Params
			if sp.HeaderDigest != p.HeaderDigest || sp.DataDigest != p.DataDigest || sp.MaxBurstLength != p.MaxBurstLength ||
				sp.FirstBurstLength != p.FirstBurstLength || sp.InitialR2T != p.InitialR2T ||
				sp.ImmediateData != p.ImmediateData || sp.MaxOutstandingR2T != p.MaxOutstandingR2T ||
				sp.MaxRecvDataSegmentLength != p.MaxRecvDataSegmentLength ||
				sp.TargetMaxRecvDataSegmentLength != p.TargetMaxRecvDataSegmentLength {
				t.Fatalf("target and initiator disagree:\ntarget    %+v\ninitiator %+v", sp, p)
			}
			// The session works with what was negotiated.
			ctx := ctxT(t)
			data := randBytes(7, 300<<10)
			good(t, "write")(s.Write16(ctx, 0, 8, 512, data, false))
			buf := make([]byte, len(data))
			good(t, "read")(s.Read16(ctx, 0, 8, 512, buf))
			if !bytes.Equal(buf, data) {
				t.Fatal("data mismatch")
			}
		})
	}
}

// good returns a checker for a command's (result, error).
func good(t *testing.T, what string) func(*initiator.Result, error) {
	return func(res *initiator.Result, err error) {
		t.Helper()
		mustGood(t, what, res, err)
	}
}

func TestLoginFailures(t *testing.T) {
	srv := iscsitest.Start(t, &iscsitest.Options{Target: func(c *iscsi.TargetConfig) {
		c.PortalGroups = []uint16{1}
	}})
	tests := []struct {
		name   string
		opts   initiator.Options
		status uint16
	}{
		{"target not found", initiator.Options{TargetName: "iqn.2026-01.io.lunway:nope"}, pdu.LoginTargetNotFound},
		{"bad initiator name", initiator.Options{InitiatorName: "not-a-name", TargetName: srv.TargetName}, pdu.LoginInitiatorError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := initiator.Dial(ctxT(t), srv.Addr, &tc.opts)
			var le *initiator.LoginError
			if !errors.As(err, &le) || le.Status != tc.status {
				t.Fatalf("got %v, want status 0x%04x", err, tc.status)
			}
		})
	}
	// Raw logins for what the initiator library would not send.
	raw := []struct {
		name   string
		req    pdu.LoginRequest
		text   string
		status uint16
	}{
		{"missing InitiatorName", pdu.LoginRequest{Transit: true, NSG: 1}, "TargetName=" + srv.TargetName + "\x00", pdu.LoginMissingParameter},
		{"missing TargetName", pdu.LoginRequest{Transit: true, NSG: 1}, "InitiatorName=iqn.2026-01.x:y\x00", pdu.LoginMissingParameter},
		{"unsupported version", pdu.LoginRequest{Transit: true, NSG: 1, VersionMin: 2, VersionMax: 2},
			"InitiatorName=iqn.2026-01.x:y\x00TargetName=" + srv.TargetName + "\x00", pdu.LoginUnsupportedVersion},
		{"session does not exist", pdu.LoginRequest{Transit: true, NSG: 1, TSIH: 77},
			"InitiatorName=iqn.2026-01.x:y\x00TargetName=" + srv.TargetName + "\x00", pdu.LoginSessionDoesNotExist},
		{"bad session type", pdu.LoginRequest{Transit: true, NSG: 1},
			"InitiatorName=iqn.2026-01.x:y\x00SessionType=Weird\x00", pdu.LoginSessionTypeUnsupported},
		{"malformed text", pdu.LoginRequest{Transit: true, NSG: 1}, "InitiatorName", pdu.LoginInitiatorError},
	}
	for _, tc := range raw {
		t.Run(tc.name, func(t *testing.T) {
			resp := rawLogin(t, srv.Addr, tc.req, tc.text)
			if resp.Status != tc.status {
				t.Fatalf("status 0x%04x, want 0x%04x", resp.Status, tc.status)
			}
		})
	}
}

// rawLogin sends one Login Request and returns the response.
func rawLogin(t *testing.T, addr string, req pdu.LoginRequest, text string) pdu.LoginResponse {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	req.ISID = [6]byte{0x80, 1, 2, 3, 4, 5}
	var b pdu.BHS
	req.Encode(&b)
	if _, err := nc.Write(pdu.AppendPDU(nil, &b, nil, []byte(text), false, false)); err != nil {
		t.Fatal(err)
	}
	p, err := pdu.NewReader(nc, pdu.Limits{}).ReadPDU()
	if err != nil {
		t.Fatalf("reading login response: %v", err)
	}
	var resp pdu.LoginResponse
	if err := resp.Decode(&p.BHS); err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestDiscovery(t *testing.T) {
	srv := iscsitest.Start(t, nil)
	// A second target on a second portal group, listening on the wildcard
	// address: it must advertise the address the initiator reached.
	st := scsi.NewTarget("iqn.2026-01.io.lunway:second", nil)
	if err := srv.AddTarget(iscsi.TargetConfig{Name: "iqn.2026-01.io.lunway:second", SCSI: st, PortalGroups: []uint16{2}}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServePortalGroup(ln, 2)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	_, port1, _ := net.SplitHostPort(srv.Addr)
	waitFor(t, func() bool { c, err := net.Dial("tcp", "127.0.0.1:"+port); c.Close(); return err == nil })

	ts, err := initiator.Discover(ctxT(t), srv.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint([]initiator.Target{
		{Name: "iqn.2026-01.io.lunway:second", Addresses: []string{"127.0.0.1:" + port + ",2"}},
		{Name: srv.TargetName, Addresses: sortedAddrs("127.0.0.1:"+port1+",1", "127.0.0.1:"+port+",2")},
	})
	if got := fmt.Sprint(ts); got != want {
		t.Fatalf("SendTargets=All\n got %s\nwant %s", got, want)
	}
	// SendTargets=<name> and, in a normal session, SendTargets= (own target).
	d, err := initiator.Dial(ctxT(t), srv.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	one, err := d.SendTargets(ctxT(t), "iqn.2026-01.io.lunway:second")
	if err != nil || len(one) != 1 || one[0].Name != "iqn.2026-01.io.lunway:second" {
		t.Fatalf("SendTargets=<name>: %v %v", one, err)
	}
	// The second target is only on portal group 2.
	if _, err := initiator.Dial(ctxT(t), srv.Addr, &initiator.Options{TargetName: "iqn.2026-01.io.lunway:second"}); err == nil {
		t.Fatal("login to a target through a portal group that does not expose it succeeded")
	}
	s2, err := initiator.Dial(ctxT(t), "127.0.0.1:"+port, &initiator.Options{TargetName: "iqn.2026-01.io.lunway:second"})
	if err != nil {
		t.Fatal(err)
	}
	if s2.PortalGroupTag() != 2 {
		t.Fatalf("tpgt %d", s2.PortalGroupTag())
	}
	s := dial(t, srv, nil)
	own, err := s.SendTargets(ctxT(t), "")
	if err != nil || len(own) != 1 || own[0].Name != srv.TargetName {
		t.Fatalf("SendTargets= in a normal session: %v %v", own, err)
	}
	s2.Close()
}

func sortedAddrs(a ...string) []string {
	for i := range a {
		for j := i + 1; j < len(a); j++ {
			if a[j] < a[i] {
				a[i], a[j] = a[j], a[i]
			}
		}
	}
	return a
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestParallelIO runs queue depth 128 of mixed reads and writes of many
// sizes on disjoint ranges and verifies every block.
func TestParallelIO(t *testing.T) {
	for _, digests := range []bool{false, true} {
		t.Run("digests="+strconv.FormatBool(digests), func(t *testing.T) {
			srv := iscsitest.Start(t, nil)
			s := dial(t, srv, &initiator.Options{HeaderDigest: digests, DataDigest: digests})
			ctx := ctxT(t)
			const workers, rounds, slot = 128, 4, 128 << 10
			var wg sync.WaitGroup
			errs := make(chan error, workers)
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := rand.New(rand.NewPCG(uint64(w), 1))
					lba := uint64(w * slot / 512)
					for i := 0; i < rounds; i++ {
						n := (1 + r.IntN(slot/512)) * 512
						data := randBytes(uint64(w*100+i), n)
						res, err := s.Write16(ctx, 0, lba, 512, data, r.IntN(4) == 0)
						if err == nil {
							err = res.Err()
						}
						if err != nil {
							errs <- fmt.Errorf("worker %d write: %w", w, err)
							return
						}
						buf := make([]byte, n)
						res, err = s.Read16(ctx, 0, lba, 512, buf)
						if err == nil {
							err = res.Err()
						}
						if err != nil {
							errs <- fmt.Errorf("worker %d read: %w", w, err)
							return
						}
						if !bytes.Equal(buf, data) {
							errs <- fmt.Errorf("worker %d round %d: data mismatch", w, i)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if inf := srv.Sessions()[0].InFlight; inf != 0 {
				t.Errorf("%d commands in flight after the test", inf)
			}
		})
	}
}

// TestR2TPaths writes through every combination of InitialR2T and
// ImmediateData, with small bursts and several outstanding R2Ts.
func TestR2TPaths(t *testing.T) {
	type cfg struct {
		initialR2T, noImmediate          bool
		burst, first, outstanding, mrdsl int
	}
	var cases []cfg
	for _, ir := range []bool{false, true} {
		for _, ni := range []bool{false, true} {
			cases = append(cases, cfg{initialR2T: ir, noImmediate: ni, burst: 1 << 20, first: 64 << 10, outstanding: 1, mrdsl: 256 << 10})
			cases = append(cases, cfg{initialR2T: ir, noImmediate: ni, burst: 4096, first: 2048, outstanding: 4, mrdsl: 1024})
		}
	}
	for _, c := range cases {
		name := fmt.Sprintf("InitialR2T=%v,ImmediateData=%v,burst=%d,first=%d,R2Ts=%d,mrdsl=%d",
			c.initialR2T, !c.noImmediate, c.burst, c.first, c.outstanding, c.mrdsl)
		t.Run(name, func(t *testing.T) {
			srv := iscsitest.Start(t, &iscsitest.Options{Server: iscsi.Options{MaxRecvDataSegmentLength: c.mrdsl}})
			s := dial(t, srv, &initiator.Options{InitialR2T: c.initialR2T, NoImmediateData: c.noImmediate,
				MaxBurstLength: c.burst, FirstBurstLength: c.first, MaxOutstandingR2T: c.outstanding})
			p := s.Params()
			if p.InitialR2T != c.initialR2T || p.ImmediateData == c.noImmediate || p.MaxOutstandingR2T != c.outstanding {
				t.Fatalf("negotiated %+v", p)
			}
			ctx := ctxT(t)
			var wg sync.WaitGroup
			for i, n := range []int{512, 1024, 2048, 2560, 4096, 8192, 65536, 100 << 10, 1 << 20} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					data := randBytes(uint64(i), n)
					lba := uint64(i) * (2 << 20) / 512
					res, err := s.Write16(ctx, 0, lba, 512, data, false)
					if err != nil || res.Err() != nil {
						t.Errorf("write %d: %v %v", n, err, res.Err())
						return
					}
					buf := make([]byte, n)
					res, err = s.Read16(ctx, 0, lba, 512, buf)
					if err != nil || res.Err() != nil || !bytes.Equal(buf, data) {
						t.Errorf("read back %d: %v", n, err)
					}
				}()
			}
			wg.Wait()
		})
	}
}

func TestKeepaliveDropsDeadInitiator(t *testing.T) {
	// Short interval, timeout with slack for a loaded CI machine.
	srv := iscsitest.Start(t, &iscsitest.Options{Server: iscsi.Options{NopInterval: 100 * time.Millisecond, NopTimeout: time.Second}})
	dead := dial(t, srv, &initiator.Options{IgnoreNopIn: true, ISID: [6]byte{0x80, 0, 0, 0, 0, 1}})
	alive := dial(t, srv, &initiator.Options{ISID: [6]byte{0x80, 0, 0, 0, 0, 2}})
	select {
	case <-dead.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("the target did not drop an initiator that ignores NOP-In")
	}
	// An initiator that answers stays, and idles through many pings.
	time.Sleep(1500 * time.Millisecond)
	select {
	case <-alive.Done():
		t.Fatalf("live session dropped: %v", alive.Err())
	default:
	}
	if _, err := alive.TestUnitReady(ctxT(t), 0); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Sessions()); n != 1 {
		t.Fatalf("%d sessions, want 1", n)
	}
}

func TestSessionReinstatement(t *testing.T) {
	srv := iscsitest.Start(t, nil)
	isid := [6]byte{0x80, 9, 9, 9, 9, 9}
	old := dial(t, srv, &initiator.Options{ISID: isid})
	ctx := ctxT(t)
	good(t, "write")(old.Write16(ctx, 0, 0, 512, randBytes(1, 4096), false))
	oldTSIH := old.TSIH()
	fresh := dial(t, srv, &initiator.Options{ISID: isid})
	select {
	case <-old.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("old session not closed by reinstatement")
	}
	if fresh.TSIH() == oldTSIH {
		t.Fatalf("reinstated session kept TSIH %d", oldTSIH)
	}
	buf := make([]byte, 4096)
	good(t, "read")(fresh.Read16(ctx, 0, 0, 512, buf))
	if !bytes.Equal(buf, randBytes(1, 4096)) {
		t.Fatal("data lost across reinstatement")
	}
	if ss := srv.Sessions(); len(ss) != 1 || ss[0].TSIH != fresh.TSIH() {
		t.Fatalf("sessions %+v", ss)
	}
	// A different ISID is a second session, not a reinstatement.
	other := dial(t, srv, &initiator.Options{ISID: [6]byte{0x80, 1}})
	if len(srv.Sessions()) != 2 {
		t.Fatal("second ISID did not make a second session")
	}
	if err := other.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(srv.Sessions()) == 1 })
}

// gate is a Device whose reads and writes block, ignoring their context
// (stuck storage), until released.
type gate struct {
	blockdev.Device
	closed  atomic.Bool
	open    chan struct{}
	entered chan struct{}
}

func newGate(d blockdev.Device) *gate {
	return &gate{Device: d, open: make(chan struct{}), entered: make(chan struct{}, 1024)}
}

func (g *gate) wait() {
	if g.closed.Load() {
		g.entered <- struct{}{}
		<-g.open
	}
}

func (g *gate) ReadAt(ctx context.Context, p []byte, off int64) error {
	g.wait()
	return g.Device.ReadAt(ctx, p, off)
}

func (g *gate) WriteAt(ctx context.Context, p []byte, off int64, f blockdev.WriteFlags) error {
	g.wait()
	return g.Device.WriteAt(ctx, p, off, f)
}

func TestTMFWhileStorageStuck(t *testing.T) {
	var g *gate
	srv := iscsitest.Start(t, &iscsitest.Options{
		Server: iscsi.Options{TMFTimeout: 300 * time.Millisecond},
		Wrap: func(_ int, d blockdev.Device) blockdev.Device {
			g = newGate(d)
			return g
		},
	})
	s := dial(t, srv, nil)
	ctx := ctxT(t)
	g.closed.Store(true)
	defer close(g.open)

	// A read stuck in storage.
	cdb := make([]byte, 16)
	cdb[0] = 0x88
	cdb[13] = 8
	stuck, err := s.Start(ctx, &initiator.Command{LUN: 0, CDB: cdb, Read: true, ExpectedLen: 4096})
	if err != nil {
		t.Fatal(err)
	}
	<-g.entered
	// A write waiting for Data-Out (InitialR2T and no immediate data would
	// be needed to hold it; here the data arrives, so it gets stuck too).
	start := time.Now()
	code, err := s.TaskManagement(ctx, scsi.TMFAbortTask, 0, stuck.ITT(), stuck.CmdSN())
	if err != nil {
		t.Fatal(err)
	}
	if code != pdu.TMFRespComplete {
		t.Fatalf("ABORT TASK response %d", code)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("ABORT TASK took %v with storage stuck", d)
	}
	// No response for the aborted task, even after storage comes back.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if res, err := stuck.Wait(short); err == nil {
		t.Fatalf("aborted task got a response: %+v", res)
	}
	// LOGICAL UNIT RESET answers promptly too.
	stuck2, err := s.Start(ctx, &initiator.Command{LUN: 0, CDB: cdb, Read: true, ExpectedLen: 4096})
	if err != nil {
		t.Fatal(err)
	}
	<-g.entered
	start = time.Now()
	code, err = s.TaskManagement(ctx, scsi.TMFLogicalUnitReset, 0, 0, 0)
	if err != nil || code != pdu.TMFRespComplete {
		t.Fatalf("LU RESET: %d %v", code, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("LU RESET took %v", d)
	}
	_ = stuck2
	// ABORT TASK of an unknown task whose CmdSN is long past.
	code, err = s.TaskManagement(ctx, scsi.TMFAbortTask, 0, 0x7777, stuck.CmdSN()-100)
	if err != nil || code != pdu.TMFRespTaskNotFound {
		t.Fatalf("ABORT TASK of unknown task: %d %v", code, err)
	}
	// Unsupported functions.
	code, err = s.TaskManagement(ctx, scsi.TMFTaskReassign, 0, 0, 0)
	if err != nil || code != pdu.TMFRespReassignUnsupported {
		t.Fatalf("TASK REASSIGN: %d %v", code, err)
	}
	code, err = s.TaskManagement(ctx, 99, 0, 0, 0)
	if err != nil || code != pdu.TMFRespNotSupported {
		t.Fatalf("function 99: %d %v", code, err)
	}
}

// TestAbortTaskWaitingForData aborts a write waiting for Data-Out (it has
// an R2T outstanding that the initiator never answers).
func TestAbortTaskWaitingForData(t *testing.T) {
	srv := iscsitest.Start(t, nil)
	s := dial(t, srv, &initiator.Options{InitialR2T: true, NoImmediateData: true})
	ctx := ctxT(t)
	// A raw WRITE(16) command: the initiator library would answer the R2T,
	// so send the command by hand and ignore the R2T.
	itt := s.NextITT()
	var b pdu.BHS
	cmd := pdu.SCSICommand{Final: true, Write: true, Attr: 1, ITT: itt, ExpectedDataTransferLength: 4096,
		CmdSN: s.TakeCmdSN(), ExpStatSN: s.ExpStatSN()}
	cmd.CDB[0] = 0x8a
	cmd.CDB[13] = 8
	cmd.Encode(&b)
	if err := s.WriteRaw(pdu.AppendPDU(nil, &b, nil, nil, false, false)); err != nil {
		t.Fatal(err)
	}
	r2t := expectPDU(t, s, pdu.OpR2T)
	if r2t.BHS.ITT() != itt {
		t.Fatalf("R2T for ITT %x", r2t.BHS.ITT())
	}
	code, err := s.TaskManagement(ctx, scsi.TMFAbortTask, 0, itt, cmd.CmdSN)
	if err != nil || code != pdu.TMFRespComplete {
		t.Fatalf("ABORT TASK: %d %v", code, err)
	}
	// The session goes on, and the window is open again.
	good(t, "tur")(s.TestUnitReady(ctx, 0))
	waitFor(t, func() bool { return srv.Sessions()[0].InFlight == 0 })
}

func expectPDU(t *testing.T, s *initiator.Session, op pdu.Opcode) *pdu.PDU {
	t.Helper()
	select {
	case p := <-s.Unsolicited():
		if p.BHS.Opcode() != op {
			t.Fatalf("got %v, want %v", p.BHS.Opcode(), op)
		}
		return p
	case <-s.Done():
		t.Fatalf("session ended waiting for %v: %v", op, s.Err())
	case <-time.After(5 * time.Second):
		t.Fatalf("no %v in 5s", op)
	}
	return nil
}

func TestShutdownDrainsInFlight(t *testing.T) {
	var g *gate
	srv := iscsitest.Start(t, &iscsitest.Options{
		Server: iscsi.Options{LogoutWait: 200 * time.Millisecond},
		Wrap: func(_ int, d blockdev.Device) blockdev.Device {
			g = newGate(d)
			return g
		},
	})
	s := dial(t, srv, nil)
	ctx := ctxT(t)
	data := randBytes(3, 64<<10)
	g.closed.Store(true)
	var pend []*initiator.Pending
	for i := 0; i < 8; i++ {
		cdb := make([]byte, 16)
		cdb[0] = 0x8a
		binary.BigEndian.PutUint64(cdb[2:], uint64(i*128))
		cdb[13] = 128
		p, err := s.Start(ctx, &initiator.Command{LUN: 0, CDB: cdb, Write: true, Data: data})
		if err != nil {
			t.Fatal(err)
		}
		pend = append(pend, p)
	}
	for range 8 {
		<-g.entered
	}
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(10 * time.Second) }()
	select {
	case <-s.LogoutRequested():
	case <-time.After(5 * time.Second):
		t.Fatal("no Async Message logout request")
	}
	time.Sleep(300 * time.Millisecond) // past LogoutWait: the server drains
	g.closed.Store(false)
	close(g.open)
	for i, p := range pend {
		res, err := p.Wait(ctx)
		if err != nil || res.Err() != nil {
			t.Fatalf("in-flight write %d: %v %v", i, err, res)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for i := 0; i < 8; i++ {
		got := make([]byte, len(data))
		srv.Devices[0].ReadAt(ctx, got, int64(i*128*512))
		if !bytes.Equal(got, data) {
			t.Fatalf("write %d not on storage after shutdown", i)
		}
	}
	if _, err := initiator.Dial(ctx, srv.Addr, &initiator.Options{TargetName: srv.TargetName}); err == nil {
		t.Fatal("login after Shutdown succeeded")
	}
}
