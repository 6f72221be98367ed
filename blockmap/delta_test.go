package blockmap

import (
	"math/rand/v2"
	"testing"
)

// blockState is the per-block model of a delta: 0 not covered,
// 1 unmapped, 2 mapped (with loc).
type blockState struct {
	state uint8
	loc   loc
}

func TestDeltaModel(t *testing.T) {
	const blocks = 4096
	for _, shift := range []uint8{3, 6} {
		seed := rand.Uint64()
		rng := rand.New(rand.NewPCG(seed, 1))
		d := newDelta(shift, 512)
		model := make([]blockState, blocks)
		for op := 0; op < 3000; op++ {
			start := rng.Uint64N(blocks)
			n := 1 + rng.Uint64N(min(blocks-start, uint64(1+rng.IntN(300))))
			if rng.IntN(4) == 0 {
				d.set(start, n, true, loc{})
				for b := start; b < start+n; b++ {
					model[b] = blockState{state: 1}
				}
			} else {
				// Sometimes continue a previous write so that merging happens.
				l := loc{seq: uint64(rng.IntN(4)), off: uint32(rng.IntN(64)) * 512, layer: uint8(rng.IntN(2))}
				d.set(start, n, false, l)
				for b := start; b < start+n; b++ {
					model[b] = blockState{state: 2, loc: l.advance(b-start, 512)}
				}
			}
			// Check a random window and the whole range every so often.
			lo := rng.Uint64N(blocks)
			hi := lo + 1 + rng.Uint64N(blocks-lo)
			if op%500 == 0 {
				lo, hi = 0, blocks
			}
			pieces := d.resolve(lo, hi-lo, nil)
			next := lo
			for _, p := range pieces {
				if p.start != next || p.n == 0 {
					t.Fatalf("seed %d shift %d op %d: pieces not contiguous at %d: %+v", seed, shift, op, next, p)
				}
				for b := p.start; b < p.start+p.n; b++ {
					m := model[b]
					switch p.kind {
					case pieceGap:
						if m.state != 0 {
							t.Fatalf("seed %d op %d block %d: gap, model %+v", seed, op, b, m)
						}
					case pieceZero:
						if m.state != 1 {
							t.Fatalf("seed %d op %d block %d: zero, model %+v", seed, op, b, m)
						}
					case pieceData:
						if m.state != 2 || m.loc != p.loc.advance(b-p.start, 512) {
							t.Fatalf("seed %d op %d block %d: data %+v, model %+v", seed, op, b, p.loc.advance(b-p.start, 512), m)
						}
					}
				}
				next = p.start + p.n
			}
			if next != hi {
				t.Fatalf("seed %d op %d: pieces end at %d, want %d", seed, op, next, hi)
			}
			// Leaves stay sorted, disjoint and inside their leaf.
			cnt := 0
			for idx, lf := range d.leaves {
				var prev uint64
				for i, e := range lf.ext {
					if e.n == 0 || e.start>>shift != idx || (e.end()-1)>>shift != idx || (i > 0 && e.start < prev) {
						t.Fatalf("seed %d op %d: bad leaf %d: %+v", seed, op, idx, lf.ext)
					}
					prev = e.end()
				}
				cnt += len(lf.ext)
			}
			// added is exactly the own-layer bytes the delta maps.
			want := map[uint64]int64{}
			for _, lf := range d.leaves {
				for _, e := range lf.ext {
					if !e.unmapped && e.loc.layer == 0 {
						want[e.loc.seq] += int64(e.n) * 512
					}
				}
			}
			for seq := range mergeKeys(want, d.added) {
				if want[seq] != d.added[seq] {
					t.Fatalf("seed %d op %d: added[%d] = %d, delta maps %d", seed, op, seq, d.added[seq], want[seq])
				}
			}
			if cnt != d.extents {
				t.Fatalf("seed %d op %d: extent count %d, counted %d", seed, op, d.extents, cnt)
			}
		}
	}
}

func TestRangeSet(t *testing.T) {
	var s rangeSet
	s.add(10, 20)
	s.add(30, 40)
	s.add(20, 25) // adjacent: merges
	s.add(5, 6)
	if got := s.r; len(got) != 3 || got[1] != [2]uint64{10, 25} {
		t.Fatalf("ranges %v", got)
	}
	s.add(0, 100)
	if len(s.r) != 1 || s.r[0] != [2]uint64{0, 100} {
		t.Fatalf("ranges %v", s.r)
	}
	for _, tc := range []struct {
		x    uint64
		want bool
	}{{0, true}, {99, true}, {100, false}} {
		if s.contains(tc.x) != tc.want {
			t.Errorf("contains(%d) != %v", tc.x, tc.want)
		}
	}
	if !s.covers(0, 100) || s.covers(50, 101) || !s.overlaps(99, 200) || s.overlaps(100, 200) {
		t.Fatalf("covers/overlaps wrong on %v", s.r)
	}
}
