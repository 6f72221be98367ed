package cache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/fault"
	"github.com/lunway/lunway/backend/mem"
	"github.com/lunway/lunway/cache"
	"github.com/lunway/lunway/cache/cachetest"
)

// history records the model state after every operation of a workload:
// states[k] is the state after the first k operations.
type history struct {
	mu     sync.Mutex
	states []map[string][]byte
	acked  int // operations that returned
}

func newHistory() *history { return &history{states: []map[string][]byte{{}}} }

// next records the state after the next operation, before it is issued.
func (h *history) next(f func(m map[string][]byte)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := maps.Clone(h.states[len(h.states)-1])
	f(m)
	h.states = append(h.states, m)
}

func (h *history) ack() {
	h.mu.Lock()
	h.acked++
	h.mu.Unlock()
}

// snapshotState lists a store's objects and their contents.
func snapshotState(ctx context.Context, s backend.Store) (map[string][]byte, error) {
	out := map[string][]byte{}
	var names []string
	if err := s.List(ctx, "", func(oi backend.ObjectInfo) error { names = append(names, oi.Name); return nil }); err != nil {
		return nil, err
	}
	for _, n := range names {
		info, err := s.Stat(ctx, n)
		if err != nil {
			return nil, err
		}
		b := make([]byte, info.Size)
		if m, err := s.ReadAt(ctx, n, b, 0); err != nil && !(errors.Is(err, io.EOF) && m == len(b)) {
			return nil, err
		}
		out[n] = b
	}
	return out, nil
}

func equalState(a, b map[string][]byte) bool {
	return maps.EqualFunc(a, b, bytes.Equal)
}

func describe(m map[string][]byte) string {
	keys := slices.Sorted(maps.Keys(m))
	var b bytes.Buffer
	for _, k := range keys {
		fmt.Fprintf(&b, "%s:%d ", k, len(m[k]))
	}
	return b.String()
}

// workload runs n random operations on s, recording them in h. Names come
// from a small pool so that runs on one object form.
func workload(t testing.TB, s *cache.Cache, h *history, rng *rand.Rand, n int) error {
	pool := []string{"seg/1", "seg/2", "seg/3", "ckpt/1", "ckpt/2", "sb"}
	ctx := context.Background()
	for i := 0; i < n; i++ {
		name := pool[rng.IntN(len(pool))]
		var err error
		switch k := rng.IntN(10); {
		case k < 3:
			data := make([]byte, rng.IntN(3000))
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
			h.next(func(m map[string][]byte) { m[name] = data })
			err = s.Put(ctx, name, data)
		case k < 4:
			h.next(func(m map[string][]byte) { delete(m, name) })
			err = s.Delete(ctx, name)
		default:
			off, l := rng.IntN(5000), rng.IntN(2000)
			p := make([]byte, l)
			for j := range p {
				p[j] = byte(rng.Uint32())
			}
			h.next(func(m map[string][]byte) {
				o := slices.Clone(m[name])
				if o == nil {
					o = []byte{}
				}
				if l > 0 && off+l > len(o) {
					o = append(o, make([]byte, off+l-len(o))...)
				}
				if l > 0 {
					copy(o[off:], p)
				}
				m[name] = o
			})
			err = s.WriteAt(ctx, name, p, int64(off))
		}
		if err != nil {
			return fmt.Errorf("op %d: %w", i, err)
		}
		h.ack()
		if rng.IntN(20) == 0 {
			time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
		}
	}
	return nil
}

// TestPrefixOrder checks the ordering promise: every state the store
// passes through is the state after some prefix of the acknowledged
// operations, and the prefixes only grow. Whether the store can overwrite
// or not, with and without failures.
func TestPrefixOrder(t *testing.T) {
	for _, tc := range []struct {
		name      string
		overwrite bool
		failures  bool
	}{
		{"putonly", false, false},
		{"overwriter", true, false},
		{"putonly-failures", false, true},
		{"overwriter-failures", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seed := rand.Uint64()
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 1))
			inner := fault.New(mem.New(&mem.Options{DisableOverwriter: !tc.overwrite}))
			defer inner.Close()
			h := newHistory()
			var checkMu sync.Mutex
			last, checks := 0, 0
			var problems []string
			check := func() {
				checkMu.Lock()
				defer checkMu.Unlock()
				state, err := snapshotState(context.Background(), inner.Inner())
				if err != nil {
					problems = append(problems, err.Error())
					return
				}
				h.mu.Lock()
				defer h.mu.Unlock()
				for k := last; k < len(h.states); k++ {
					if equalState(state, h.states[k]) {
						last = k
						checks++
						return
					}
				}
				problems = append(problems, fmt.Sprintf("store state %s is not the state after any prefix from %d on", describe(state), last))
			}
			inner.AddRule(fault.Rule{Match: fault.Mutations(), Action: fault.Call(func(fault.Op) { check() })})
			// A slow store now and then, so that a backlog forms and runs
			// get coalesced.
			inner.AddRule(fault.Rule{Match: fault.And(fault.Mutations(), fault.Probability(0.05, seed+1)),
				Action: fault.Delay(3 * time.Millisecond)})
			if tc.failures {
				inner.AddRule(fault.Rule{Match: fault.And(fault.Mutations(), fault.Probability(0.3, seed)),
					Action: fault.Fail(backend.ErrUnavailable)})
			}
			o := smallOptions(t.TempDir(), nil)
			o.UploadHold = time.Duration(rng.IntN(3)) * time.Millisecond
			c := openCache(t, inner, o)
			if err := workload(t, c, h, rng, 400); err != nil {
				t.Fatal(err)
			}
			if err := c.Drain(t.Context()); err != nil {
				t.Fatal(err)
			}
			check()
			if len(problems) > 0 {
				t.Fatalf("%d problems, first: %s", len(problems), problems[0])
			}
			if last != len(h.states)-1 {
				t.Fatalf("after Drain the store holds the state after %d of %d operations", last, len(h.states)-1)
			}
			st := c.Stats()
			t.Logf("%d checks; uploads %d for %d records; failures %d", checks, st.Uploads, st.UploadedRecords, st.UploadFailures)
			if st.PendingRecords != 0 || st.LogBytes > o.LogFileBytes+8<<10 {
				t.Errorf("after Drain: %d records pending, log %d bytes", st.PendingRecords, st.LogBytes)
			}
		})
	}
}

// TestCrash crashes the local disk and the store together at every
// upload (while it is in flight) and at random moments, in every crash
// mode, reopens the cache on what survived and checks that it holds the
// state after every acknowledged operation (or one more), both through
// the cache at once and in the store after draining.
func TestCrash(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	modes := []cachetest.Mode{cachetest.ProcessCrash, cachetest.PowerLoss, cachetest.TornPowerLoss}
	inFlight := []fault.InFlight{fault.LoseInFlight, fault.CompleteInFlight}
	type crash struct {
		fs           *cachetest.CrashFS
		inner        backend.Store
		acked, total int
		mode         cachetest.Mode
	}
	var crashes []crash
	fs := cachetest.NewCrashFS()
	inner := fault.New(mem.New(&mem.Options{DisableOverwriter: true}))
	defer inner.Close()
	h := newHistory()
	var mu sync.Mutex
	take := func() {
		mu.Lock()
		defer mu.Unlock()
		n := len(crashes)
		ic, err := inner.CrashClone(fault.CrashOptions{InFlight: inFlight[n%2], Seed: uint64(n)})
		if err != nil {
			t.Error(err)
			return
		}
		mode := modes[n%3]
		h.mu.Lock()
		acked, total := h.acked, len(h.states)-1
		fc := fs.Crash(mode, uint64(n))
		h.mu.Unlock()
		crashes = append(crashes, crash{fc, ic, acked, total, mode})
	}
	inner.AddRule(fault.Rule{Match: fault.Mutations(), Action: fault.Call(func(fault.Op) { take() })})
	inner.AddRule(fault.Rule{Match: fault.And(fault.Mutations(), fault.Probability(0.2, seed)),
		Action: fault.Fail(backend.ErrUnavailable)})
	o := smallOptions("/c", fs)
	c, err := cache.Open(t.Context(), inner, o)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Duration(rng.IntN(2000)) * time.Microsecond):
			}
			take()
		}
	}()
	werr := workload(t, c, h, rand.New(rand.NewPCG(seed, 3)), 250)
	done <- struct{}{}
	<-done
	if werr != nil {
		t.Fatal(werr)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Every crash point replays a log: keep the run short by sampling.
	if max := 80; len(crashes) > max {
		sampled := crashes[:0:0]
		for i := range max {
			sampled = append(sampled, crashes[i*len(crashes)/max])
		}
		crashes = sampled
	}
	t.Logf("%d crash points", len(crashes))
	for i, cr := range crashes {
		o := smallOptions("/c", cr.fs)
		c, err := cache.Open(context.Background(), cr.inner, o)
		if err != nil {
			t.Fatalf("crash %d (%v, %d acked): reopen: %v\n%s", i, cr.mode, cr.acked, err, cr.fs.Files())
		}
		match := func(state map[string][]byte) int {
			h.mu.Lock()
			defer h.mu.Unlock()
			for k := cr.acked; k <= cr.total; k++ {
				if equalState(state, h.states[k]) {
					return k
				}
			}
			return -1
		}
		got, err := snapshotState(context.Background(), c)
		if err != nil {
			t.Fatalf("crash %d: reading through the cache: %v", i, err)
		}
		k := match(got)
		if k < 0 {
			t.Fatalf("crash %d (%v, %d acked of %d): the cache shows %s, not the state after %d..%d operations",
				i, cr.mode, cr.acked, cr.total, describe(got), cr.acked, cr.total)
		}
		if err := c.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		inStore, err := snapshotState(context.Background(), cr.inner)
		if err != nil {
			t.Fatal(err)
		}
		if !equalState(inStore, got) {
			t.Fatalf("crash %d: after draining the store holds %s, the cache showed %s", i, describe(inStore), describe(got))
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		cr.inner.Close()
	}
}
