package transfer

import (
	"context"
	"reflect"
	"testing"

	"github.com/lunway/lunway/image"
)

// TestProduceMergesHoles: chunks without data go out as one task per run
// (bounded by maxHoleTask), data chunks one by one, covering everything
// in order.
func TestProduceMergesHoles(t *testing.T) {
	const chunk = 1 << 20
	for _, tc := range []struct {
		name          string
		total, srcEnd int64
		data          []image.Extent
		want          []task
	}{
		{"all holes", 8 * chunk, 8 * chunk, nil, []task{{0, 8 * chunk, false}}},
		{"data in the middle", 8 * chunk, 8 * chunk, []image.Extent{{Off: 3*chunk + 512, Len: 4096, Kind: image.Data}},
			[]task{{0, 3 * chunk, false}, {3 * chunk, chunk, true}, {4 * chunk, 4 * chunk, false}}},
		{"data at both ends, zero kind is a hole", 4 * chunk, 4 * chunk,
			[]image.Extent{{Off: 0, Len: chunk, Kind: image.Data}, {Off: chunk, Len: 2 * chunk, Kind: image.Zero}, {Off: 3 * chunk, Len: chunk, Kind: image.Data}},
			[]task{{0, chunk, true}, {chunk, 2 * chunk, false}, {3 * chunk, chunk, true}}},
		{"device beyond the image, short last chunk", 5*chunk + 4096, 2 * chunk, []image.Extent{{Off: 0, Len: chunk, Kind: image.Data}},
			[]task{{0, chunk, true}, {chunk, 4*chunk + 4096, false}}},
		{"holes across map windows and the task bound", 2*maxHoleTask + 3*chunk, 2*maxHoleTask + 3*chunk, nil,
			[]task{{0, maxHoleTask, false}, {maxHoleTask, maxHoleTask, false}, {2 * maxHoleTask, 3 * chunk, false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			work := make(chan task, 16)
			errc := make(chan error, 1)
			go func() {
				errc <- produce(context.Background(), work, tc.total, tc.srcEnd, chunk, func(_ context.Context, off, n int64) ([]image.Extent, error) {
					var out image.ExtentList
					pos := off
					for _, e := range tc.data {
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
				})
			}()
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
