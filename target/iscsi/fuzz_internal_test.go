package iscsi

import (
	"bytes"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/lunway/lunway/blockdev/mem"
	"github.com/lunway/lunway/target/pdu"
	"github.com/lunway/lunway/target/scsi"
)

// loginSeed returns a valid login (security and operational stage
// requests) followed by a few full feature PDUs.
func loginSeed(target string) []byte {
	var out []byte
	add := func(m interface{ Encode(*pdu.BHS) }, text string) {
		var b pdu.BHS
		m.Encode(&b)
		out = pdu.AppendPDU(out, &b, nil, []byte(text), false, false)
	}
	isid := [6]byte{0x80, 1, 2, 3, 4, 5}
	add(&pdu.LoginRequest{Transit: true, CSG: 0, NSG: 1, ISID: isid, CmdSN: 1},
		"InitiatorName=iqn.2026-01.io.lunway:fuzz\x00TargetName="+target+"\x00AuthMethod=None\x00")
	add(&pdu.LoginRequest{Transit: true, CSG: 1, NSG: 3, ISID: isid, CmdSN: 1},
		"HeaderDigest=None\x00DataDigest=None\x00MaxRecvDataSegmentLength=8192\x00InitialR2T=No\x00")
	cmd := pdu.SCSICommand{Final: false, Write: true, ITT: 1, ExpectedDataTransferLength: 1024, CmdSN: 1}
	cmd.CDB[0], cmd.CDB[8] = 0x2a, 2
	add(&cmd, string(make([]byte, 512)))
	add(&pdu.DataOut{Final: true, ITT: 1, TTT: pdu.ReservedTag, BufferOffset: 512}, string(make([]byte, 512)))
	add(&pdu.NOPOut{Immediate: true, ITT: 2, TTT: pdu.ReservedTag, CmdSN: 2}, "ping")
	add(&pdu.TextRequest{Final: true, ITT: 3, TTT: pdu.ReservedTag, CmdSN: 2}, "SendTargets=All\x00")
	add(&pdu.TaskMgmtRequest{Immediate: true, Function: 1, ITT: 4, RTT: 99, CmdSN: 3}, "")
	add(&pdu.LogoutRequest{Immediate: true, ITT: 5, CmdSN: 3}, "")
	return out
}

// pipeTarget returns a server with one target, fuzzTarget, whose LUN 0 is
// a 1 MiB memory device; the server closes with the test.
func pipeTarget(tb testing.TB, opts *Options) *Server {
	tb.Helper()
	srv, err := NewServer(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	st := scsi.NewTarget(fuzzTarget, nil)
	d, _ := mem.New(1<<20, nil)
	lu, _ := scsi.NewLU(scsi.LUOptions{Device: d})
	st.AddLU(0, lu)
	if err := srv.AddTarget(TargetConfig{Name: fuzzTarget, SCSI: st}); err != nil {
		tb.Fatal(err)
	}
	return srv
}

// servePipe serves a new connection of srv over a pipe and returns it
// with the initiator's end.
func servePipe(srv *Server) (*conn, net.Conn) {
	a, b := net.Pipe()
	c := newConn(srv, a, 1)
	srv.mu.Lock()
	srv.mu.conns[c] = struct{}{}
	srv.mu.Unlock()
	go c.serve()
	return c, b
}

// fuzzTarget is the target name of pipeTarget's server.
const fuzzTarget = "iqn.2026-01.io.lunway:fuzz"

// FuzzConn feeds arbitrary bytes to a target connection, from the first
// login byte on: the server must neither panic nor hang.
func FuzzConn(f *testing.F) {
	seed := loginSeed(fuzzTarget)
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Add(append(append([]byte(nil), seed[:200]...), bytes.Repeat([]byte{0xff}, 100)...))
	srv := pipeTarget(f, &Options{LoginTimeout: time.Second, NopInterval: -1, AuthFailureDelay: -1, TMFTimeout: time.Second})
	f.Fuzz(func(t *testing.T, in []byte) {
		c, b := servePipe(srv)
		go io.Copy(io.Discard, b)
		b.SetWriteDeadline(time.Now().Add(2 * time.Second))
		b.Write(in)
		b.Close()
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			t.Fatal("connection did not end after its input closed")
		}
	})
}

// TestLoginSeed checks that the fuzz seed reaches full feature phase and
// runs its commands, so that FuzzConn mutates a meaningful stream.
func TestLoginSeed(t *testing.T) {
	srv := pipeTarget(t, &Options{NopInterval: -1})
	c, b := servePipe(srv)
	got := make(chan []byte)
	go func() {
		all, _ := io.ReadAll(b)
		got <- all
	}()
	b.Write(loginSeed(fuzzTarget))
	out := <-got // the target closes after the logout
	<-c.done
	r := pdu.NewReader(bytes.NewReader(out), pdu.Limits{})
	var ops []pdu.Opcode
	for {
		p, err := r.ReadPDU()
		if err != nil {
			break
		}
		ops = append(ops, p.BHS.Opcode())
	}
	want := []pdu.Opcode{pdu.OpLoginResp, pdu.OpLoginResp, pdu.OpSCSIResponse, pdu.OpNOPIn, pdu.OpTextResp,
		pdu.OpTaskMgmtResp, pdu.OpLogoutResp}
	// Commands complete asynchronously: compare as sets after the login.
	slices.Sort(ops[min(2, len(ops)):])
	slices.Sort(want[2:])
	if len(ops) != len(want) {
		t.Fatalf("responses %v, want %v", ops, want)
	}
	for i := range ops {
		if ops[i] != want[i] {
			t.Fatalf("responses %v, want %v", ops, want)
		}
	}
}
