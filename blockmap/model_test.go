package blockmap

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/blockdev"
)

// modelVol is a volume under test and what it must contain.
type modelVol struct {
	name   string
	v      *Volume
	data   []byte
	mapped []bool // per block
	snaps  map[string]*modelSnap
	origin string // "vol@snap" for clones
}

type modelSnap struct {
	data   []byte
	mapped []bool
}

type modelTest struct {
	t     *testing.T
	rng   *rand.Rand
	seed  uint64
	store backend.Store
	opts  *Options
	bs    int64
	vols  map[string]*modelVol
	step  int
	mix   string
	log   []string // recent operations, printed on failure
}

func (m *modelTest) fatalf(format string, args ...any) {
	m.t.Helper()
	tail := m.log[max(0, len(m.log)-25):]
	m.t.Fatalf("seed %d step %d: %s\nrecent operations:\n  %s", m.seed, m.step, fmt.Sprintf(format, args...), joinLines(tail))
}

func joinLines(s []string) string {
	var b bytes.Buffer
	for i, l := range s {
		if i > 0 {
			b.WriteString("\n  ")
		}
		b.WriteString(l)
	}
	return b.String()
}

func (m *modelTest) logf(format string, args ...any) {
	m.log = append(m.log, fmt.Sprintf(format, args...))
}

// modelSteps is the number of steps per seed: LUNWAY_MODEL_STEPS
// overrides; -short runs fewer.
func modelSteps() int {
	if s := os.Getenv("LUNWAY_MODEL_STEPS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			return n
		}
	}
	if testing.Short() || raceEnabled {
		return 80
	}
	return 300
}

func TestModel(t *testing.T) {
	seeds := []uint64{1, 2, rand.Uint64()}
	if raceEnabled {
		seeds = []uint64{1, rand.Uint64()}
	}
	if s := os.Getenv("LUNWAY_MODEL_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		seeds = []uint64{n}
	}
	for _, seed := range seeds {
		for _, overwrite := range []bool{true, false} {
			for _, mix := range []string{"all", "gc"} {
				t.Run(fmt.Sprintf("seed=%d/overwrite=%v/mix=%s", seed, overwrite, mix), func(t *testing.T) {
					t.Parallel()
					runModel(t, seed, overwrite, mix, modelSteps())
				})
			}
		}
	}
}

// runModel runs one random operation stream. Mix "gc" leaves out
// snapshots, clones and copies (which pin segments) so that garbage
// collection has work.
func runModel(t *testing.T, seed uint64, overwrite bool, mix string, steps int) {
	rng := rand.New(rand.NewPCG(seed, 0x6c756e776179))
	opts := testOptions()
	opts.SegmentSize = 64 << 10
	opts.MaxDeltaExtents = 256
	opts.MaxDirtyBytes = 256 << 10
	if rng.IntN(2) == 0 {
		opts.LogicalBlockSize = 4096
	}
	m := &modelTest{t: t, rng: rng, seed: seed, store: memStore(t, overwrite), opts: opts, mix: mix,
		bs: int64(opts.LogicalBlockSize), vols: make(map[string]*modelVol)}
	if m.bs == 0 {
		m.bs = DefaultLogicalBlockSize
	}
	size := int64(1+rng.IntN(4)) << 19
	v, err := Create(t.Context(), m.store, "vol", size, opts)
	if err != nil {
		t.Fatal(err)
	}
	m.vols["vol"] = &modelVol{name: "vol", v: v, data: make([]byte, size), mapped: make([]bool, size/m.bs), snaps: map[string]*modelSnap{}}
	t.Cleanup(func() {
		ops := map[string]int{}
		for _, l := range m.log {
			ops[strings.Fields(l)[0]]++
		}
		st := m.vols["vol"]
		if st != nil {
			s := st.v.Stats()
			t.Logf("seed %d: ops %v; vol: %d checkpoints, %d GC segments, %d bytes moved, %d segments freed, write amplification %.2f",
				seed, ops, s.Checkpoints, s.GCSegments, s.GCBytesMoved, s.SegmentsFreed, s.WriteAmplification)
		}
		for _, mv := range m.vols {
			if mv.v != nil {
				if err := mv.v.Close(); err != nil {
					t.Errorf("seed %d: close %s: %v", seed, mv.name, err)
				}
			}
		}
		for name := range m.vols {
			checkStore(t, m.store, name, opts)
		}
	})
	for m.step = 0; m.step < steps; m.step++ {
		m.doStep()
		if m.step%50 == 49 {
			for _, mv := range m.vols {
				if rep, err := mv.v.Check(t.Context()); err != nil {
					m.fatalf("Check(%s): %v %q", mv.name, err, rep.Problems)
				}
			}
		}
	}
}

func (m *modelTest) pick() *modelVol {
	names := make([]string, 0, len(m.vols))
	for n := range m.vols {
		names = append(names, n)
	}
	slices.Sort(names)
	return m.vols[names[m.rng.IntN(len(names))]]
}

// randRange picks a block-aligned range, biased to small ones.
func (m *modelTest) randRange(mv *modelVol) (off, n int64) {
	blocks := int64(len(mv.data)) / m.bs
	if blocks == 0 {
		return 0, 0
	}
	start := m.rng.Int64N(blocks)
	maxN := min(blocks-start, []int64{1, 8, 64, 1024}[m.rng.IntN(4)])
	return start * m.bs, (1 + m.rng.Int64N(maxN)) * m.bs
}

func (m *modelTest) verify(mv *modelVol) {
	m.t.Helper()
	ctx := m.t.Context()
	if got := mv.v.Info().SizeBytes; got != int64(len(mv.data)) {
		m.fatalf("%s: size %d, model %d", mv.name, got, len(mv.data))
	}
	got := make([]byte, len(mv.data))
	if err := mv.v.ReadAt(ctx, got, 0); err != nil {
		m.fatalf("%s: ReadAt: %v", mv.name, err)
	}
	if i := firstDiff(got, mv.data); i >= 0 {
		m.fatalf("%s: byte %d (block %d) is %#x, model %#x", mv.name, i, int64(i)/m.bs, got[i], mv.data[i])
	}
	if len(mv.data) == 0 {
		return
	}
	ext, err := mv.v.AllocationStatus(ctx, 0, int64(len(mv.data)))
	if err != nil {
		m.fatalf("%s: AllocationStatus: %v", mv.name, err)
	}
	next := int64(0)
	for _, e := range ext {
		if e.Off != next {
			m.fatalf("%s: allocation status gap at %d", mv.name, next)
		}
		for b := e.Off / m.bs; b < (e.Off+e.Len)/m.bs; b++ {
			if mv.mapped[b] != (e.State == blockdev.Mapped) {
				m.fatalf("%s: block %d reported %v, model mapped=%v", mv.name, b, e.State, mv.mapped[b])
			}
		}
		next = e.Off + e.Len
	}
	if next != int64(len(mv.data)) {
		m.fatalf("%s: allocation status ends at %d of %d", mv.name, next, len(mv.data))
	}
}

func firstDiff(a, b []byte) int {
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

func (m *modelTest) doStep() {
	ctx := m.t.Context()
	mv := m.pick()
	r := m.rng.IntN(100)
	if m.mix == "gc" && r >= 68 && r < 83 || m.mix == "gc" && r >= 91 && r < 95 {
		r = 0 // a write instead of a snapshot, clone or copy
	}
	switch {
	case r < 35: // write
		off, n := m.randRange(mv)
		if n == 0 {
			return
		}
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(m.rng.IntN(256))
		}
		var flags blockdev.WriteFlags
		if m.rng.IntN(8) == 0 {
			flags = blockdev.FUA
		}
		m.logf("write %s off=%d n=%d flags=%d", mv.name, off, n, flags)
		if err := mv.v.WriteAt(ctx, p, off, flags); err != nil {
			m.fatalf("WriteAt: %v", err)
		}
		copy(mv.data[off:], p)
		for b := off / m.bs; b < (off+n)/m.bs; b++ {
			mv.mapped[b] = true
		}
	case r < 45: // unmap or write zeroes
		off, n := m.randRange(mv)
		if n == 0 {
			return
		}
		if m.rng.IntN(6) == 0 {
			off, n = 0, int64(len(mv.data)) // sometimes everything
		}
		m.logf("unmap %s off=%d n=%d", mv.name, off, n)
		var err error
		if m.rng.IntN(2) == 0 {
			err = mv.v.Unmap(ctx, off, n)
		} else {
			err = mv.v.WriteZeroes(ctx, off, n, true, 0)
		}
		if err != nil {
			m.fatalf("unmap: %v", err)
		}
		clear(mv.data[off : off+n])
		for b := off / m.bs; b < (off+n)/m.bs; b++ {
			mv.mapped[b] = false
		}
	case r < 55: // partial read
		off, n := m.randRange(mv)
		if n == 0 {
			return
		}
		got := make([]byte, n)
		if err := mv.v.ReadAt(ctx, got, off); err != nil {
			m.fatalf("ReadAt: %v", err)
		}
		if i := firstDiff(got, mv.data[off:off+n]); i >= 0 {
			m.fatalf("%s: read at %d: byte %d differs", mv.name, off, i)
		}
	case r < 60:
		m.logf("flush %s", mv.name)
		if err := mv.v.Flush(ctx); err != nil {
			m.fatalf("Flush: %v", err)
		}
	case r < 64:
		m.logf("checkpoint %s", mv.name)
		if err := mv.v.Checkpoint(ctx); err != nil {
			m.fatalf("Checkpoint: %v", err)
		}
	case r < 68:
		th := 0.2 + 0.75*m.rng.Float64()
		m.logf("gc %s threshold=%.2f", mv.name, th)
		if _, err := mv.v.GC(ctx, th); err != nil {
			m.fatalf("GC: %v", err)
		}
	case r < 72: // snapshot
		if len(mv.snaps) >= 3 {
			return
		}
		name := fmt.Sprintf("s%d", m.step)
		m.logf("snapshot %s@%s", mv.name, name)
		if err := mv.v.Snapshot(ctx, name); err != nil {
			m.fatalf("Snapshot: %v", err)
		}
		mv.snaps[name] = &modelSnap{data: bytes.Clone(mv.data), mapped: slices.Clone(mv.mapped)}
	case r < 75: // verify a snapshot through a read-only open
		for name, s := range mv.snaps {
			m.logf("verify snapshot %s@%s", mv.name, name)
			sv, err := OpenSnapshot(ctx, m.store, mv.name, name, m.opts)
			if err != nil {
				m.fatalf("OpenSnapshot: %v", err)
			}
			sm := &modelVol{name: mv.name + "@" + name, v: sv, data: s.data, mapped: s.mapped}
			m.verify(sm)
			if rep, err := sv.Check(ctx); err != nil {
				m.fatalf("Check(snapshot): %v %q", err, rep.Problems)
			}
			if err := sv.Close(); err != nil {
				m.fatalf("close snapshot: %v", err)
			}
			break
		}
	case r < 78: // delete a snapshot
		for name := range mv.snaps {
			m.logf("delete snapshot %s@%s", mv.name, name)
			err := mv.v.DeleteSnapshot(ctx, name)
			if m.hasClone(mv.name + "@" + name) {
				if !errors.Is(err, blockdev.ErrInUse) {
					m.fatalf("DeleteSnapshot with a clone: %v, want ErrInUse", err)
				}
				break
			}
			if err != nil {
				m.fatalf("DeleteSnapshot: %v", err)
			}
			delete(mv.snaps, name)
			break
		}
	case r < 81: // clone
		if len(m.vols) >= 4 {
			return
		}
		for name, s := range mv.snaps {
			cname := fmt.Sprintf("c%d", m.step)
			m.logf("clone %s@%s -> %s", mv.name, name, cname)
			cv, err := Clone(ctx, m.store, mv.name, name, cname, m.opts)
			if err != nil {
				m.fatalf("Clone: %v", err)
			}
			m.vols[cname] = &modelVol{name: cname, v: cv, data: bytes.Clone(s.data), mapped: slices.Clone(s.mapped),
				snaps: map[string]*modelSnap{}, origin: mv.name + "@" + name}
			mv = m.vols[cname]
			break
		}
	case r < 83: // delete a clone (one without clones of its own)
		if mv.origin == "" || m.hasCloneOf(mv.name) {
			return
		}
		m.logf("delete clone %s", mv.name)
		if err := mv.v.Close(); err != nil {
			m.fatalf("close: %v", err)
		}
		if err := Delete(ctx, m.store, mv.name); err != nil {
			m.fatalf("Delete: %v", err)
		}
		delete(m.vols, mv.name)
		return
	case r < 87: // resize
		cur := int64(len(mv.data))
		newSize := max(0, cur+(m.rng.Int64N(5)-2)*(256<<10))
		m.logf("resize %s %d -> %d", mv.name, cur, newSize)
		err := mv.v.Resize(ctx, newSize)
		if newSize < cur && slices.Contains(mv.mapped[newSize/m.bs:], true) {
			if !errors.Is(err, blockdev.ErrInUse) {
				m.fatalf("shrink over mapped data: %v, want ErrInUse", err)
			}
			return
		}
		if err != nil {
			m.fatalf("Resize: %v", err)
		}
		nd := make([]byte, newSize)
		copy(nd, mv.data)
		nm := make([]bool, newSize/m.bs)
		copy(nm, mv.mapped)
		mv.data, mv.mapped = nd, nm
	case r < 91: // reopen, cleanly or after a flush and a crash
		crash := m.rng.IntN(2) == 0
		m.logf("reopen %s crash=%v", mv.name, crash)
		if crash {
			if err := mv.v.Flush(ctx); err != nil {
				m.fatalf("Flush: %v", err)
			}
			mv.v.abandon()
		} else if err := mv.v.Close(); err != nil {
			m.fatalf("Close: %v", err)
		}
		v, err := Open(ctx, m.store, mv.name, m.opts)
		if err != nil {
			m.fatalf("Open: %v", err)
		}
		mv.v = v
	case r < 95: // copy within the volume
		off, n := m.randRange(mv)
		if n == 0 {
			return
		}
		dst := m.rng.Int64N(int64(len(mv.data))/m.bs-n/m.bs+1) * m.bs
		src := blockdev.Device(mv.v)
		srcData, srcMapped := mv.data, mv.mapped
		if len(mv.snaps) > 0 && m.rng.IntN(2) == 0 {
			for name, s := range mv.snaps {
				if int64(len(s.data)) < off+n {
					break
				}
				sv, err := OpenSnapshot(ctx, m.store, mv.name, name, m.opts)
				if err != nil {
					m.fatalf("OpenSnapshot: %v", err)
				}
				defer sv.Close()
				src, srcData, srcMapped = sv, s.data, s.mapped
				m.logf("copy from snapshot %s", name)
				break
			}
		}
		m.logf("copy %s %d -> %d n=%d", mv.name, off, dst, n)
		chunk := bytes.Clone(srcData[off : off+n])
		cm := slices.Clone(srcMapped[off/m.bs : (off+n)/m.bs])
		if err := mv.v.CopyRange(ctx, src, off, dst, n); err != nil {
			m.fatalf("CopyRange: %v", err)
		}
		copy(mv.data[dst:], chunk)
		copy(mv.mapped[dst/m.bs:], cm)
	default: // compare and write
		off, n := m.randRange(mv)
		if n == 0 {
			return
		}
		n = min(n, 16*m.bs)
		p := bytes.Repeat([]byte{byte(m.step)}, int(n))
		cmp := bytes.Clone(mv.data[off : off+n])
		want := true
		if m.rng.IntN(3) == 0 {
			cmp[m.rng.IntN(len(cmp))] ^= 1
			want = false
		}
		m.logf("caw %s off=%d n=%d match=%v", mv.name, off, n, want)
		err := mv.v.CompareAndWrite(ctx, cmp, p, off, 0)
		var me *blockdev.MiscompareError
		switch {
		case want && err != nil:
			m.fatalf("CompareAndWrite: %v", err)
		case !want && !errors.As(err, &me):
			m.fatalf("CompareAndWrite of a mismatch: %v", err)
		case want:
			copy(mv.data[off:], p)
			for b := off / m.bs; b < (off+n)/m.bs; b++ {
				mv.mapped[b] = true
			}
		}
	}
	m.verify(mv)
}

func (m *modelTest) hasClone(origin string) bool {
	for _, mv := range m.vols {
		if mv.origin == origin {
			return true
		}
	}
	return false
}

func (m *modelTest) hasCloneOf(vol string) bool {
	for _, mv := range m.vols {
		if len(mv.origin) > len(vol) && mv.origin[:len(vol)+1] == vol+"@" {
			return true
		}
	}
	return false
}
