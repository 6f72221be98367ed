package iscsi_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lunway/lunway/target/initiator"
	"github.com/lunway/lunway/target/iscsitest"
)

// BenchmarkIO measures the target through the Go initiator on loopback:
// BenchmarkIO/op=read/bs=4KiB/qd=32 and so on. Compare runs with benchstat;
// bench/ compares against tgt with real initiators.
func BenchmarkIO(b *testing.B) {
	for _, bc := range []struct {
		op     string
		bs, qd int
		random bool
	}{
		{"read", 4 << 10, 1, true}, {"write", 4 << 10, 1, true},
		{"read", 4 << 10, 32, true}, {"write", 4 << 10, 32, true},
		{"read", 1 << 20, 4, false}, {"write", 1 << 20, 4, false},
	} {
		b.Run(fmt.Sprintf("op=%s/bs=%dKiB/qd=%d", bc.op, bc.bs>>10, bc.qd), func(b *testing.B) {
			const size = 256 << 20
			srv := iscsitest.Start(b, &iscsitest.Options{SizeBytes: size})
			s, err := initiator.Dial(context.Background(), srv.Addr, &initiator.Options{TargetName: srv.TargetName})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			if _, err := s.ClearUnitAttentions(ctx, 0); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(bc.bs))
			b.ReportAllocs()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for w := 0; w < bc.qd; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]byte, bc.bs)
					r := rand.New(rand.NewPCG(uint64(w), 9))
					blocks := size / bc.bs
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						off := int(i) % blocks
						if bc.random {
							off = r.IntN(blocks)
						}
						lba := uint64(off * bc.bs / 512)
						var res *initiator.Result
						var err error
						if bc.op == "read" {
							res, err = s.Read16(ctx, 0, lba, 512, buf)
						} else {
							res, err = s.Write16(ctx, 0, lba, 512, buf, false)
						}
						if err != nil || res.Err() != nil {
							b.Errorf("%s: %v %v", bc.op, err, res)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}
