package rbd

import (
	"cmp"
	"slices"

	"github.com/lunway/lunway/blockdev"
)

// extents turns allocated byte ranges (in any order, possibly overlapping
// or reaching outside [off, off+n)) into consecutive extents covering
// exactly [off, off+n), block-aligned, mapped wherever any byte of a block
// is allocated. off and n are multiples of bs.
func extents(off, n, bs int64, offs, lens []int64) []blockdev.Extent {
	type span struct{ a, b int64 }
	spans := make([]span, 0, len(offs))
	end := off + n
	for i := range offs {
		a, b := offs[i], offs[i]+lens[i]
		a, b = max(a, off), min(b, end)
		if a >= b {
			continue
		}
		a = a / bs * bs
		b = (b + bs - 1) / bs * bs
		spans = append(spans, span{a, min(b, end)})
	}
	slices.SortFunc(spans, func(x, y span) int { return cmp.Compare(x.a, y.a) })
	var out []blockdev.Extent
	add := func(a, b int64, st blockdev.ExtentState) {
		if a >= b {
			return
		}
		if k := len(out) - 1; k >= 0 && out[k].State == st && out[k].Off+out[k].Len == a {
			out[k].Len += b - a
			return
		}
		out = append(out, blockdev.Extent{Off: a, Len: b - a, State: st})
	}
	pos := off
	for _, s := range spans {
		if s.b <= pos {
			continue
		}
		add(pos, s.a, blockdev.Deallocated)
		add(max(pos, s.a), s.b, blockdev.Mapped)
		pos = s.b
	}
	add(pos, end, blockdev.Deallocated)
	return out
}
