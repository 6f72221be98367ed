package transfer

import (
	"context"
	"reflect"
	"testing"

	"github.com/lunway/lunway/image"
)

// mapOf returns a mapFunc over a fixed list of extents (Data and Zero
// kinds; the rest is a hole).
func mapOf(ext []image.Extent) mapFunc {
	return func(_ context.Context, off, n int64) ([]image.Extent, error) {
		var out image.ExtentList
		pos := off
		for _, e := range ext {
			lo, hi := max(e.Off, off), min(e.End(), off+n)
			if lo >= hi {
				continue
			}
			out.Add(pos, lo-pos, image.Hole)
			out.Add(lo, hi-lo, e.Kind)
			pos = hi
		}
		out.Add(pos, off+n-pos, image.Hole)
		return out, nil
	}
}

// TestProduce: chunks without data go out as one task per run (bounded by
// maxHoleTask), data chunks one by one, covering everything in order; with
// the destination's map, runs where it holds no data are marked clean.
func TestProduce(t *testing.T) {
	const chunk = 1 << 20
	data := func(off, n int64) task { return task{off: off, n: n, data: true} }
	hole := func(off, n int64) task { return task{off: off, n: n} }
	clean := func(off, n int64) task { return task{off: off, n: n, clean: true} }
	dataClean := func(off, n int64) task { return task{off: off, n: n, data: true, clean: true} }
	ext := func(off, n int64) image.Extent { return image.Extent{Off: off, Len: n, Kind: image.Data} }
	for _, tc := range []struct {
		name          string
		total, srcEnd int64
		src, dst      []image.Extent
		noDst         bool
		want          []task
	}{
		{"all holes", 8 * chunk, 8 * chunk, nil, nil, true, []task{hole(0, 8*chunk)}},
		{"data in the middle", 8 * chunk, 8 * chunk, []image.Extent{ext(3*chunk+512, 4096)}, nil, true,
			[]task{hole(0, 3*chunk), data(3*chunk, chunk), hole(4*chunk, 4*chunk)}},
		{"data at both ends, zero kind is a hole", 4 * chunk, 4 * chunk,
			[]image.Extent{ext(0, chunk), {Off: chunk, Len: 2 * chunk, Kind: image.Zero}, ext(3*chunk, chunk)}, nil, true,
			[]task{data(0, chunk), hole(chunk, 2*chunk), data(3*chunk, chunk)}},
		{"device beyond the image, short last chunk", 5*chunk + 4096, 2 * chunk, []image.Extent{ext(0, chunk)}, nil, true,
			[]task{data(0, chunk), hole(chunk, 4*chunk+4096)}},
		{"holes across map windows and the task bound", 2*maxHoleTask + 3*chunk, 2*maxHoleTask + 3*chunk, nil, nil, true,
			[]task{hole(0, maxHoleTask), hole(maxHoleTask, maxHoleTask), hole(2*maxHoleTask, 3*chunk)}},
		{"empty destination: every hole is clean", 6 * chunk, 6 * chunk, []image.Extent{ext(2*chunk, chunk)}, nil, false,
			[]task{clean(0, 2*chunk), dataClean(2*chunk, chunk), clean(3*chunk, 3*chunk)}},
		{"destination data splits a hole run", 8 * chunk, 8 * chunk, []image.Extent{ext(0, chunk)},
			[]image.Extent{ext(0, 2*chunk), ext(5*chunk+4096, 512)}, false,
			[]task{data(0, chunk), hole(chunk, chunk), clean(2*chunk, 3*chunk), hole(5*chunk, chunk), clean(6*chunk, 2*chunk)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			work := make(chan task, 16)
			errc := make(chan error, 1)
			var dstMap mapFunc
			if !tc.noDst {
				dstMap = mapOf(tc.dst)
			}
			go func() { errc <- produce(context.Background(), work, tc.total, tc.srcEnd, chunk, mapOf(tc.src), dstMap) }()
			var got []task
			for tk := range work {
				got = append(got, tk)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("tasks %+v, want %+v", got, tc.want)
			}
		})
	}
}
