package file_test

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/file"
)

// BenchmarkFileDevice measures single-stream I/O on a 64 MiB file:
//
//	go test -run '^$' -bench FileDevice -count 6 ./blockdev/file | benchstat -
func BenchmarkFileDevice(b *testing.B) {
	const size = 64 << 20
	for _, direct := range []bool{false, true} {
		for _, op := range []string{"randread", "randwrite", "randwrite-fua", "seqwrite"} {
			for _, bs := range []int{4 << 10, 64 << 10, 1 << 20} {
				name := fmt.Sprintf("op=%s/bs=%dKiB", op, bs>>10)
				if direct {
					name = "direct/" + name
				}
				b.Run(name, func(b *testing.B) {
					ctx := b.Context()
					d, err := file.Open(ctx, filepath.Join(b.TempDir(), "bench.img"),
						&file.Options{Create: true, SizeBytes: size, Direct: direct})
					if err != nil {
						b.Fatal(err)
					}
					defer d.Close()
					buf := make([]byte, bs)
					for i := range buf {
						buf[i] = byte(i)
					}
					if op == "randread" {
						// Read data, not holes.
						chunk := make([]byte, 1<<20)
						for off := int64(0); off < size; off += int64(len(chunk)) {
							if err := d.WriteAt(ctx, chunk, off, 0); err != nil {
								b.Fatal(err)
							}
						}
					}
					rng := rand.New(rand.NewPCG(1, 2))
					blocks := int64(size / bs)
					var off int64
					b.SetBytes(int64(bs))
					b.ReportAllocs()
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						switch op {
						case "seqwrite":
							off = int64(i) % blocks * int64(bs)
						default:
							off = rng.Int64N(blocks) * int64(bs)
						}
						switch op {
						case "randread":
							err = d.ReadAt(ctx, buf, off)
						case "randwrite-fua":
							err = d.WriteAt(ctx, buf, off, blockdev.FUA)
						default:
							err = d.WriteAt(ctx, buf, off, 0)
						}
						if err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}
