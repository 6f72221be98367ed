package scsi

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkIO measures READ (10) and WRITE (10) through Begin/Execute/End
// on a mem device, with allocations per command.
func BenchmarkIO(b *testing.B) {
	for _, op := range []string{"read", "write"} {
		for _, bs := range []int{4 << 10, 64 << 10} {
			b.Run(fmt.Sprintf("op=%s/bs=%dKiB", op, bs>>10), func(b *testing.B) {
				f := newFixture(b, nil, nil, nil)
				n := nexus("iqn.2026-01.io.lunway:bench", 1, 1)
				f.ready(n)
				blocks := bs / 512
				cdb := []byte{0x28, 0, 0, 0, 0, 0, 0, byte(blocks >> 8), byte(blocks), 0, 0, 0, 0, 0, 0, 0}
				var out []byte
				if op == "write" {
					cdb[0] = 0x2a
					out = make([]byte, bs)
				}
				cmd := &Command{Nexus: n, LUN: 0, CDB: cdb, Attr: AttrSimple, DataOut: out, ExpectedLen: uint32(bs)}
				ctx := context.Background()
				b.SetBytes(int64(bs))
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					task := f.tg.Begin(ctx, cmd)
					res := task.Execute()
					if res.Status != StatusGood {
						b.Fatalf("status %#x", res.Status)
					}
					res.Release()
					task.End()
				}
			})
		}
	}
}
