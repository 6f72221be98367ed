//go:build ceph

package rbd_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lunway/lunway/backend/rados"
	"github.com/lunway/lunway/backend/rbd"
	"github.com/lunway/lunway/internal/testenv"
)

// BenchmarkCephDevice measures the device alone (no iSCSI) on the test
// cluster, to compare with `rbd bench` of the same shape:
//
//	go test -tags ceph,pacific -run '^$' -bench CephDevice -benchtime 5s ./backend/rbd
func BenchmarkCephDevice(b *testing.B) {
	env := testenv.Ceph(b)
	const size = 256 << 20
	o := rbd.Options{
		ConnOptions: rados.ConnOptions{ConfFile: env["CEPH_CONF"], Keyring: env["CEPH_KEYRING"]},
		Pool:        env["CEPH_POOL"],
		Image:       fmt.Sprintf("lw-bench-%d", rand.Uint32()),
		Create:      true,
		SizeBytes:   size,
	}
	d, err := rbd.Open(context.Background(), &o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		d.Close()
		removeImageTB(b, o)
	})
	ctx := context.Background()
	fill := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(fill)) {
		if err := d.WriteAt(ctx, fill, off, 0); err != nil {
			b.Fatal(err)
		}
	}
	for _, op := range []string{"randread", "randwrite"} {
		for _, qd := range []int{1, 32} {
			b.Run(fmt.Sprintf("op=%s/bs=4KiB/qd=%d", op, qd), func(b *testing.B) {
				b.SetBytes(4096)
				b.ReportAllocs()
				var next atomic.Int64
				var wg sync.WaitGroup
				for w := range qd {
					wg.Add(1)
					go func() {
						defer wg.Done()
						rng := rand.New(rand.NewPCG(uint64(w), 7))
						p := make([]byte, 4096)
						for next.Add(1) <= int64(b.N) {
							off := rng.Int64N(size/4096) * 4096
							var err error
							if op == "randread" {
								err = d.ReadAt(ctx, p, off)
							} else {
								err = d.WriteAt(ctx, p, off, 0)
							}
							if err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
			})
		}
	}
}
