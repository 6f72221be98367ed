package iscsi_test

import (
	"bytes"
	"testing"

	"github.com/lunway/lunway/target/initiator"
	"github.com/lunway/lunway/target/iscsitest"
	"github.com/lunway/lunway/target/pdu"
)

// TestBadDataOut answers an R2T with Data-Out PDUs that break its rules:
// each fails the command with CHECK CONDITION (ABORTED COMMAND), nothing
// reaches storage, and the session goes on.
func TestBadDataOut(t *testing.T) {
	tests := []struct {
		name string
		// mangle edits the Data-Out answering an R2T of 4096 bytes at 0.
		mangle func(d *pdu.DataOut) (dataLen int)
	}{
		{"beyond the R2T", func(d *pdu.DataOut) int { return 4096 + 512 }},
		{"wrong offset", func(d *pdu.DataOut) int { d.BufferOffset = 512; return 512 }},
		{"wrong DataSN", func(d *pdu.DataOut) int { d.DataSN = 5; return 512 }},
		{"unknown TTT", func(d *pdu.DataOut) int { d.TTT ^= 0x5555; return 512 }},
		{"F bit before the end", func(d *pdu.DataOut) int { d.Final = true; return 512 }},
	}
	srv := iscsitest.Start(t, nil)
	ctx := ctxT(t)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := dial(t, srv, &initiator.Options{InitialR2T: true, NoImmediateData: true, ISID: [6]byte{0x80, 7, byte(i)}})
			itt := s.NextITT()
			var b pdu.BHS
			cmd := pdu.SCSICommand{Final: true, Write: true, Attr: 1, ITT: itt, ExpectedDataTransferLength: 4096,
				CmdSN: s.TakeCmdSN(), ExpStatSN: s.ExpStatSN()}
			cmd.CDB[0], cmd.CDB[9], cmd.CDB[13] = 0x8a, 64, 8 // WRITE(16) LBA 64, 8 blocks
			cmd.Encode(&b)
			s.WriteRaw(pdu.AppendPDU(nil, &b, nil, nil, false, false))
			r2tp := expectPDU(t, s, pdu.OpR2T)
			var r2t pdu.R2T
			r2t.Decode(&r2tp.BHS)
			d := pdu.DataOut{LUN: r2t.LUN, ITT: itt, TTT: r2t.TTT, BufferOffset: 0}
			n := tc.mangle(&d)
			d.Encode(&b)
			s.WriteRaw(pdu.AppendPDU(nil, &b, nil, bytes.Repeat([]byte{0xcc}, n), false, false))
			p := expectPDU(t, s, pdu.OpSCSIResponse)
			var sr pdu.SCSIResponse
			sr.Decode(&p.BHS)
			if sr.ITT != itt || sr.Status != 0x02 {
				t.Fatalf("response %+v", sr)
			}
			sense, _ := initiator.ParseSense(p.Data[2:])
			if sense.Key != initiator.SenseAbortedCommand {
				t.Fatalf("sense %v", sense)
			}
			buf := make([]byte, 4096)
			good(t, "read back")(s.Read16(ctx, 0, 64, 512, buf))
			if !bytes.Equal(buf, make([]byte, 4096)) {
				t.Fatal("data of a failed write reached storage")
			}
		})
	}
}
