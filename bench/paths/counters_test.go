package paths

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/lunway/lunway/bench"
)

func TestCountersSubAmplify(t *testing.T) {
	before := Counters{SCSIReads: 10, SCSIWrites: 20, SCSIOthers: 3, SCSIReadBytes: 4096, SCSIWriteBytes: 8192,
		BackendReadOps: 1, BackendReadBytes: 512, BackendWriteOps: 2, BackendWriteBytes: 1024, BackendFlushes: 1}
	after := Counters{SCSIReads: 110, SCSIWrites: 320, SCSIOthers: 103, SCSIReadBytes: 4096 + 100*4096, SCSIWriteBytes: 8192 + 300*4096,
		BackendReadOps: 51, BackendReadBytes: 512 + 50*8192, BackendWriteOps: 32, BackendWriteBytes: 1024 + 600*4096, BackendFlushes: 101}
	d := after.Sub(before)
	want := Counters{SCSIReads: 100, SCSIWrites: 300, SCSIOthers: 100, SCSIReadBytes: 100 * 4096, SCSIWriteBytes: 300 * 4096,
		BackendReadOps: 50, BackendReadBytes: 50 * 8192, BackendWriteOps: 30, BackendWriteBytes: 600 * 4096, BackendFlushes: 100}
	if d != want {
		t.Fatalf("Sub = %+v\nwant %+v", d, want)
	}
	m := Measurement{Reads: 100, Writes: 200, Flushes: 100, ReadBytes: 100 * 4096, WriteBytes: 200 * 4096}
	got := Amplify(m, d)
	wantA := Amplification{
		SANCmdsPerOp:             500.0 / 300,
		SANWritesPerWrite:        1.5,
		SANBytesPerByte:          400.0 / 300,
		BackendWritesPerWrite:    0.15,
		BackendWriteBytesPerByte: 3,
		BackendReadsPerRead:      0.5,
		BackendOpsPerOp:          180.0 / 300,
	}
	if got != wantA {
		t.Fatalf("Amplify = %+v\nwant %+v", got, wantA)
	}
	// No guest operations: every ratio is 0, never NaN or Inf.
	if z := Amplify(Measurement{}, d); z != (Amplification{}) {
		t.Fatalf("Amplify of nothing = %+v", z)
	}
}

// TestLunwayCounters runs workloads against an in-process Lunway target
// with a blockmap and a file LUN and checks that the counters account for
// every guest operation: on a direct path each guest write is exactly one
// SCSI WRITE, and each flush one SYNCHRONIZE CACHE.
func TestLunwayCounters(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	lw, err := StartLunway(ctx, dir, []LUNSpec{
		{Backend: "blockmap", Name: "vol", Size: 32 << 20},
		{Backend: "file", Path: filepath.Join(dir, "lun.img"), Size: 32 << 20},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := lw.Close(); err != nil {
			t.Error(err)
		}
	}()
	const span = 8 << 20
	for lun, backend := range []string{"blockmap", "file"} {
		t.Run(backend, func(t *testing.T) {
			tg, err := bench.ParseURL(lw.URL(lun))
			if err != nil {
				t.Fatal(err)
			}
			s, err := bench.Dial(ctx, tg)
			if err != nil {
				t.Fatal(err)
			}
			dev, err := NewISCSIDevice(ctx, s, tg.LUN)
			if err != nil {
				s.Close()
				t.Fatal(err)
			}
			defer dev.Close()
			tgt := &target{dev: dev, counters: func() Counters { return lw.Counters(lun) },
				settle: func(ctx context.Context) error { return lw.Settle(ctx, lun) }}
			for _, w := range []Workload{
				FillWorkload(),
				{Name: "journal", BlockSize: 4096, QueueDepth: 1, FlushEvery: 1, RegionBytes: 1 << 20, Duration: 100 * time.Millisecond},
				{Name: "mixed", BlockSize: 16384, QueueDepth: 4, Random: true, ReadPercent: 50, Duration: 100 * time.Millisecond},
			} {
				rec, err := measure(ctx, tgt, w, span)
				if err != nil {
					t.Fatalf("%s: %v", w.Name, err)
				}
				c, a := rec.Counters, rec.Amplification
				if c == nil || a == nil {
					t.Fatalf("%s: not counted", w.Name)
				}
				if c.SCSIWrites != uint64(rec.Writes) || c.SCSIReads != uint64(rec.Reads) ||
					c.SCSIWriteBytes != uint64(rec.WriteBytes) || c.SCSIReadBytes != uint64(rec.ReadBytes) {
					t.Errorf("%s: SCSI %+v for guest %+v", w.Name, c, rec.Measurement)
				}
				// Every guest flush and the final one reached the LU.
				if c.SCSIOthers < uint64(rec.Flushes)+1 {
					t.Errorf("%s: %d other commands for %d flushes", w.Name, c.SCSIOthers, rec.Flushes)
				}
				if a.SANWritesPerWrite != 1 && rec.Writes > 0 {
					t.Errorf("%s: %v SAN writes per write on a direct path", w.Name, a.SANWritesPerWrite)
				}
				switch backend {
				case "file":
					// The counting wrapper sees exactly what the LU did.
					if c.BackendWriteOps != int64(c.SCSIWrites) || c.BackendReadOps != int64(c.SCSIReads) ||
						c.BackendFlushes < rec.Flushes+1 || c.BackendWriteBytes != rec.WriteBytes {
						t.Errorf("%s: file backend %+v for guest %+v", w.Name, c, rec.Measurement)
					}
				case "blockmap":
					// After the final flush and a checkpoint, every byte
					// written once is in the store (plus the map).
					if w.OnePass && c.BackendWriteBytes <= rec.WriteBytes {
						t.Errorf("%s: blockmap wrote %d backend bytes for %d guest bytes", w.Name, c.BackendWriteBytes, rec.WriteBytes)
					}
				}
				if w.OnePass && rec.Writes != span>>20 {
					t.Errorf("fill wrote %d MiB of %d", rec.Writes, span>>20)
				}
			}
		})
	}
	if _, err := StartLunway(ctx, t.TempDir(), []LUNSpec{{Backend: "nfs"}}, nil); err == nil {
		t.Fatal("unknown backend accepted")
	}
}
