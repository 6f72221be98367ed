package fault_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/backendtest"
	"github.com/lunway/lunway/backend/fault"
	"github.com/lunway/lunway/backend/mem"
)

// opaque hides the concrete type of a store (so that fault cannot clone it
// cheaply) and any capability but backend.Store.
type opaque struct{ backend.Store }

// opaqueOW is opaque but keeps backend.Overwriter.
type opaqueOW struct {
	backend.Store
	backend.Overwriter
}

func hide(s mem.Store) backend.Store {
	if ow, ok := s.(backend.Overwriter); ok {
		return opaqueOW{s, ow}
	}
	return opaque{s}
}

func TestConformance(t *testing.T) {
	cases := []struct {
		name string
		new  func() backend.Store
	}{
		{"mem", func() backend.Store { return fault.New(mem.New(nil)) }},
		{"mem-put-only", func() backend.Store { return fault.New(mem.New(&mem.Options{DisableOverwriter: true})) }},
		{"opaque", func() backend.Store { return fault.New(hide(mem.New(nil))) }},
		{"nested", func() backend.Store { return fault.New(fault.New(mem.New(nil))) }},
		{"crash-clone", func() backend.Store {
			c, err := fault.New(hide(mem.New(nil))).CrashClone(fault.CrashOptions{})
			if err != nil {
				panic(err)
			}
			return c
		}},
		// Rules that never fire must not change behaviour.
		{"idle-rules", func() backend.Store {
			s := fault.New(mem.New(nil))
			s.AddRule(fault.Rule{Match: fault.NamePrefix("never/"), Action: fault.Fail(nil)})
			s.AddRule(fault.Rule{Match: fault.Probability(0, 1), Action: fault.Drop()})
			s.AddRule(fault.Rule{Action: fault.Call(func(fault.Op) {})})
			return s
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			backendtest.Run(t, func(t *testing.T) backend.Store { return c.new() })
		})
	}
}

func TestCapability(t *testing.T) {
	if _, ok := fault.New(mem.New(nil)).(backend.Overwriter); !ok {
		t.Error("fault over an Overwriter is not an Overwriter")
	}
	for _, inner := range []backend.Store{mem.New(&mem.Options{DisableOverwriter: true}), opaque{mem.New(nil)}} {
		s := fault.New(inner)
		if _, ok := s.(backend.Overwriter); ok {
			t.Errorf("fault over %T is an Overwriter", inner)
		}
		c, err := s.CrashClone(fault.CrashOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := c.(backend.Overwriter); ok {
			t.Errorf("crash clone of fault over %T is an Overwriter", inner)
		}
	}
}

func op(kind fault.Kind, name string, seq, mutation int64) fault.Op {
	return fault.Op{Kind: kind, Name: name, Seq: seq, Mutation: mutation}
}

func TestMatchers(t *testing.T) {
	put := op(fault.OpPut, "vol/map/0001", 4, 2)
	read := op(fault.OpReadAt, "vol/data/0001", 5, -1)
	list := op(fault.OpList, "vol/", 6, -1)
	tests := []struct {
		name string
		m    fault.Matcher
		want [3]bool // put, read, list
	}{
		{"Kinds(Put)", fault.Kinds(fault.OpPut), [3]bool{true, false, false}},
		{"Kinds(ReadAt,List)", fault.Kinds(fault.OpReadAt, fault.OpList), [3]bool{false, true, true}},
		{"Kinds(bogus)", fault.Kinds(fault.Kind(200)), [3]bool{}},
		{"Mutations", fault.Mutations(), [3]bool{true, false, false}},
		{"Reads", fault.Reads(), [3]bool{false, true, true}},
		{"NamePrefix(vol/map/)", fault.NamePrefix("vol/map/"), [3]bool{true, false, false}},
		{"NamePrefix(vol/)", fault.NamePrefix("vol/"), [3]bool{true, true, true}},
		{"NameGlob(vol/*/0001)", fault.NameGlob("vol/*/0001"), [3]bool{true, true, false}},
		{"NameGlob(vol/*)", fault.NameGlob("vol/*"), [3]bool{false, false, true}},
		{"NameGlob(vol/map/000[0-1])", fault.NameGlob("vol/map/000[0-1]"), [3]bool{true, false, false}},
		{"OpIndex(5,6)", fault.OpIndex(5, 6), [3]bool{false, true, true}},
		{"MutationIndex(2)", fault.MutationIndex(2), [3]bool{true, false, false}},
		{"MutationIndex(3)", fault.MutationIndex(3), [3]bool{false, false, false}},
		{"MutationIndexFrom(0)", fault.MutationIndexFrom(0), [3]bool{true, false, false}},
		{"MutationIndexFrom(3)", fault.MutationIndexFrom(3), [3]bool{false, false, false}},
		{"And()", fault.And(), [3]bool{true, true, true}},
		{"And(Reads,NamePrefix(vol/d))", fault.And(fault.Reads(), fault.NamePrefix("vol/d")), [3]bool{false, true, false}},
		{"Or()", fault.Or(), [3]bool{false, false, false}},
		{"Or(Mutations,Kinds(List))", fault.Or(fault.Mutations(), fault.Kinds(fault.OpList)), [3]bool{true, false, true}},
		{"Not(Mutations)", fault.Not(fault.Mutations()), [3]bool{false, true, true}},
		{"Probability(1)", fault.Probability(1, 7), [3]bool{true, true, true}},
		{"Probability(0)", fault.Probability(0, 7), [3]bool{false, false, false}},
	}
	for _, tt := range tests {
		got := [3]bool{tt.m(put), tt.m(read), tt.m(list)}
		if got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
	if fault.Kinds(fault.OpPut)(fault.Op{Kind: 200}) {
		t.Error("Kinds matched an unknown kind")
	}
	defer func() {
		if recover() == nil {
			t.Error("NameGlob with a malformed pattern did not panic")
		}
	}()
	fault.NameGlob("[")
}

func TestProbabilityDeterministic(t *testing.T) {
	draw := func(seed uint64) []bool {
		m := fault.Probability(0.3, seed)
		out := make([]bool, 2000)
		for i := range out {
			out[i] = m(fault.Op{})
		}
		return out
	}
	a, b, c := draw(1), draw(1), draw(2)
	if !slices.Equal(a, b) {
		t.Error("same seed, different draws")
	}
	if slices.Equal(a, c) {
		t.Error("different seeds, same draws")
	}
	n := 0
	for _, x := range a {
		if x {
			n++
		}
	}
	if n < 500 || n > 700 {
		t.Errorf("Probability(0.3) matched %d of 2000", n)
	}
}

func TestFail(t *testing.T) {
	ctx := t.Context()
	s := fault.New(mem.New(nil))
	id := s.AddRule(fault.Rule{
		Match:  fault.And(fault.Kinds(fault.OpPut), fault.NamePrefix("map/")),
		Action: fault.Fail(backend.ErrNoSpace),
		Times:  2,
	})
	if err := s.Put(ctx, "data/1", []byte("x")); err != nil {
		t.Fatalf("unmatched Put: %v", err)
	}
	for i := range 2 {
		err := s.Put(ctx, "map/1", []byte("x"))
		if !errors.Is(err, backend.ErrNoSpace) || !errors.Is(err, fault.ErrInjected) {
			t.Fatalf("Put %d = %v; want injected ErrNoSpace", i, err)
		}
	}
	if _, err := s.Stat(ctx, "map/1"); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("failed Put created the object: %v", err)
	}
	if err := s.Put(ctx, "map/1", []byte("x")); err != nil {
		t.Fatalf("Put after the rule retired: %v", err)
	}
	if got := s.Hits(id); got != 2 {
		t.Errorf("Hits = %d, want 2", got)
	}
	st := s.Stats()
	if st.Calls[fault.OpPut] != 4 || st.Failed[fault.OpPut] != 2 || st.Calls[fault.OpStat] != 1 || st.Mutations != 4 {
		t.Errorf("Stats = %+v", st)
	}
	// Fail(nil) means unavailable.
	s.AddRule(fault.Rule{Match: fault.Kinds(fault.OpStat), Action: fault.Fail(nil)})
	if _, err := s.Stat(ctx, "map/1"); !errors.Is(err, backend.ErrUnavailable) || !errors.Is(err, fault.ErrInjected) {
		t.Errorf("Stat = %v; want injected ErrUnavailable", err)
	}
	if !s.RemoveRule(id) || s.RemoveRule(id) {
		t.Error("RemoveRule did not report existence")
	}
	s.ClearRules()
	if _, err := s.Stat(ctx, "map/1"); err != nil {
		t.Errorf("Stat after ClearRules: %v", err)
	}
}

func TestFailEveryKind(t *testing.T) {
	ctx := t.Context()
	s := fault.New(mem.New(nil))
	if err := s.Put(ctx, "o", []byte("data")); err != nil {
		t.Fatal(err)
	}
	s.AddRule(fault.Rule{Action: fault.Fail(nil)})
	ow := s.(backend.Overwriter)
	calls := map[fault.Kind]func() error{
		fault.OpReadAt: func() error { _, err := s.ReadAt(ctx, "o", make([]byte, 1), 0); return err },
		fault.OpPut:    func() error { return s.Put(ctx, "o", []byte("new")) },
		fault.OpDelete: func() error { return s.Delete(ctx, "o") },
		fault.OpList: func() error {
			return s.List(ctx, "", func(backend.ObjectInfo) error { return errors.New("fn called") })
		},
		fault.OpStat:    func() error { _, err := s.Stat(ctx, "o"); return err },
		fault.OpWriteAt: func() error { return ow.WriteAt(ctx, "o", []byte("X"), 0) },
	}
	for k, f := range calls {
		if err := f(); !errors.Is(err, fault.ErrInjected) {
			t.Errorf("%v = %v; want ErrInjected", k, err)
		}
	}
	st := s.Stats()
	for k := range fault.NumKinds {
		if st.Calls[k] != 1+b2i(k == int(fault.OpPut)) || st.Failed[k] != 1 {
			t.Errorf("%v: calls %d failed %d", fault.Kind(k), st.Calls[k], st.Failed[k])
		}
	}
	s.ClearRules()
	p := make([]byte, 4)
	if _, err := s.ReadAt(ctx, "o", p, 0); err != nil || string(p) != "data" {
		t.Errorf("object after failed mutations: %q, %v", p, err)
	}
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func TestDrop(t *testing.T) {
	ctx := t.Context()
	s := fault.New(mem.New(nil))
	if err := s.Put(ctx, "keep", []byte("old")); err != nil {
		t.Fatal(err)
	}
	id := s.AddRule(fault.Rule{Action: fault.Drop()})
	if err := s.Put(ctx, "keep", []byte("new")); err != nil {
		t.Fatalf("dropped Put = %v; want nil", err)
	}
	if err := s.Put(ctx, "lost", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.(backend.Overwriter).WriteAt(ctx, "keep", []byte("N"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "keep"); err != nil {
		t.Fatal(err)
	}
	// Reads are not dropped.
	p := make([]byte, 3)
	if _, err := s.ReadAt(ctx, "keep", p, 0); err != nil || string(p) != "old" {
		t.Errorf("keep = %q, %v; want old", p, err)
	}
	if _, err := s.Stat(ctx, "lost"); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("dropped Put created an object: %v", err)
	}
	if got := s.Hits(id); got != 4 {
		t.Errorf("Hits = %d, want 4 (mutations only)", got)
	}
	st := s.Stats()
	if st.Dropped[fault.OpPut] != 2 || st.Dropped[fault.OpWriteAt] != 1 || st.Dropped[fault.OpDelete] != 1 || st.Dropped[fault.OpReadAt] != 0 {
		t.Errorf("Stats.Dropped = %v", st.Dropped)
	}
	// Dropped writes are not in a crash clone.
	c, err := s.CrashClone(fault.CrashOptions{InFlight: fault.CompleteInFlight})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stat(ctx, "lost"); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("crash clone has a dropped Put: %v", err)
	}
}

func TestDelay(t *testing.T) {
	s := fault.New(mem.New(nil))
	s.AddRule(fault.Rule{Match: fault.Kinds(fault.OpPut), Action: fault.Delay(30 * time.Millisecond)})
	start := time.Now()
	if err := s.Put(t.Context(), "a", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("delayed Put took %v", d)
	}
	s.ClearRules()
	s.AddRule(fault.Rule{Match: fault.Kinds(fault.OpPut), Action: fault.Delay(time.Hour)})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	start = time.Now()
	err := s.Put(ctx, "a", []byte("y"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Put delayed past its deadline = %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("delay ignored the context: %v", d)
	}
	p := make([]byte, 1)
	if _, err := s.ReadAt(t.Context(), "a", p, 0); err != nil || p[0] != 'x' {
		t.Errorf("Put that timed out in a delay was applied: %q, %v", p, err)
	}
	if got := s.Stats().Delayed[fault.OpPut]; got != 2 {
		t.Errorf("Delayed = %d, want 2", got)
	}
	// Delay then Fail: both rules act, in order.
	s.ClearRules()
	s.AddRule(fault.Rule{Action: fault.Delay(10 * time.Millisecond)})
	s.AddRule(fault.Rule{Action: fault.Fail(nil)})
	start = time.Now()
	if _, err := s.Stat(t.Context(), "a"); !errors.Is(err, fault.ErrInjected) || time.Since(start) < 10*time.Millisecond {
		t.Errorf("delay+fail: %v after %v", err, time.Since(start))
	}
}

func TestHang(t *testing.T) {
	s := fault.New(mem.New(nil))
	s.AddRule(fault.Rule{Match: fault.Kinds(fault.OpStat), Action: fault.Hang()})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_, err := s.Stat(ctx, "a")
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("hung Stat = %v", err)
	}
	// Close releases a hung call.
	errc := make(chan error, 1)
	go func() {
		_, err := s.Stat(context.Background(), "a")
		errc <- err
	}()
	waitFor(t, func() bool { return s.Stats().Hung[fault.OpStat] == 2 })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, backend.ErrClosed) {
		t.Errorf("hung Stat after Close = %v; want ErrClosed", err)
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCorrupt(t *testing.T) {
	ctx := t.Context()
	s := fault.New(mem.New(nil))
	data := bytes.Repeat([]byte{0x5a}, 4096)
	if err := s.Put(ctx, "a", data); err != nil {
		t.Fatal(err)
	}
	s.AddRule(fault.Rule{Match: fault.Kinds(fault.OpReadAt), Action: fault.Corrupt(1), Times: 1})
	p := make([]byte, 4096)
	if _, err := s.ReadAt(ctx, "a", p, 0); err != nil {
		t.Fatal(err)
	}
	if d := bitDiff(p, data); d != 1 {
		t.Errorf("corrupted read differs in %d bits, want 1", d)
	}
	if _, err := s.ReadAt(ctx, "a", p, 0); err != nil || !bytes.Equal(p, data) {
		t.Errorf("stored data changed by a read corruption: %v", err)
	}
	s.AddRule(fault.Rule{Match: fault.Mutations(), Action: fault.Corrupt(2)})
	if err := s.Put(ctx, "b", data); err != nil {
		t.Fatal(err)
	}
	if d := bitDiff(data, bytes.Repeat([]byte{0x5a}, 4096)); d != 0 {
		t.Error("Corrupt changed the caller's buffer")
	}
	if _, err := s.Inner().ReadAt(ctx, "b", p, 0); err != nil || bitDiff(p, data) != 1 {
		t.Errorf("corrupted Put stored %d bit flips, %v", bitDiff(p, data), err)
	}
	if err := s.(backend.Overwriter).WriteAt(ctx, "a", data[:512], 512); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Inner().ReadAt(ctx, "a", p, 0); err != nil || bitDiff(p, data) != 1 {
		t.Errorf("corrupted WriteAt stored %d bit flips, %v", bitDiff(p, data), err)
	}
	st := s.Stats()
	if st.Corrupted[fault.OpReadAt] != 1 || st.Corrupted[fault.OpPut] != 1 || st.Corrupted[fault.OpWriteAt] != 1 {
		t.Errorf("Stats.Corrupted = %v", st.Corrupted)
	}
}

func bitDiff(a, b []byte) int {
	n := 0
	for i := range a {
		n += bits.OnesCount8(a[i] ^ b[i])
	}
	return n
}

func TestAvailability(t *testing.T) {
	ctx := t.Context()
	s := fault.New(mem.New(nil))
	if err := s.Put(ctx, "a", []byte("x")); err != nil {
		t.Fatal(err)
	}
	s.SetAvailability(fault.Unavailable)
	if _, err := s.Stat(ctx, "a"); !errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("Stat while unavailable = %v", err)
	}
	if err := s.Put(ctx, "b", []byte("x")); !errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("Put while unavailable = %v", err)
	}
	s.SetAvailability(fault.Available)
	if _, err := s.Stat(ctx, "b"); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Put while unavailable left an object: %v", err)
	}

	s.SetAvailability(fault.UnavailableHang)
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := s.Stat(short, "a"); !errors.Is(err, backend.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stat while hanging = %v", err)
	}
	// A hung call proceeds when the store comes back.
	errc := make(chan error, 1)
	go func() { errc <- s.Put(ctx, "c", []byte("late")) }()
	waitFor(t, func() bool { return s.Stats().Hung[fault.OpPut] == 1 })
	select {
	case err := <-errc:
		t.Fatalf("Put returned while the store hangs: %v", err)
	case <-time.After(10 * time.Millisecond):
	}
	s.SetAvailability(fault.Available)
	if err := <-errc; err != nil {
		t.Fatalf("hung Put after the store came back: %v", err)
	}
	if _, err := s.Stat(ctx, "c"); err != nil {
		t.Errorf("hung Put not applied: %v", err)
	}
	// Switching from hanging to failing wakes hung calls to fail.
	s.SetAvailability(fault.UnavailableHang)
	go func() { _, err := s.Stat(ctx, "c"); errc <- err }()
	waitFor(t, func() bool { return s.Stats().Hung[fault.OpStat] == 2 })
	s.SetAvailability(fault.Unavailable)
	if err := <-errc; !errors.Is(err, backend.ErrUnavailable) || !errors.Is(err, fault.ErrInjected) {
		t.Errorf("hung Stat after switching to Unavailable = %v", err)
	}
}

// readObj reads a whole object, or returns nil if it does not exist.
func readObj(t *testing.T, s backend.Store, name string) []byte {
	t.Helper()
	info, err := s.Stat(t.Context(), name)
	if errors.Is(err, backend.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("Stat(%q): %v", name, err)
	}
	p := make([]byte, info.Size)
	if n, err := s.ReadAt(t.Context(), name, p, 0); err != nil && !(err == io.EOF && n == len(p)) {
		t.Fatalf("ReadAt(%q): %v", name, err)
	}
	return p
}

func TestCrashCloneIndependent(t *testing.T) {
	for _, inner := range []func() backend.Store{
		func() backend.Store { return mem.New(nil) },
		func() backend.Store { return hide(mem.New(nil)) },
	} {
		ctx := t.Context()
		s := fault.New(inner())
		s.AddRule(fault.Rule{Match: fault.NamePrefix("x"), Action: fault.Fail(nil)})
		if err := s.Put(ctx, "a", []byte("one")); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, "d/b", []byte("two")); err != nil {
			t.Fatal(err)
		}
		c, err := s.CrashClone(fault.CrashOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.(backend.Overwriter).WriteAt(ctx, "a", []byte("O"), 0); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, "d/b"); err != nil {
			t.Fatal(err)
		}
		if err := c.Put(ctx, "c", []byte("three")); err != nil {
			t.Fatal(err)
		}
		if err := c.Put(ctx, "x", nil); err != nil {
			t.Fatalf("clone inherited rules: %v", err)
		}
		if got := readObj(t, c, "a"); string(got) != "one" {
			t.Errorf("clone a = %q", got)
		}
		if got := readObj(t, c, "d/b"); string(got) != "two" {
			t.Errorf("clone d/b = %q", got)
		}
		if got := readObj(t, s, "c"); got != nil {
			t.Errorf("original has the clone's object c")
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if got := readObj(t, c, "a"); string(got) != "one" {
			t.Errorf("clone after original closed: a = %q", got)
		}
		if _, err := s.CrashClone(fault.CrashOptions{}); !errors.Is(err, backend.ErrClosed) {
			t.Errorf("CrashClone after Close = %v", err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCrashCloneInFlight takes clones from a Call action, with the
// mutation in flight, under each InFlight mode.
func TestCrashCloneInFlight(t *testing.T) {
	old := bytes.Repeat([]byte{'o'}, 8*512)
	newData := bytes.Repeat([]byte{'N'}, 8*512-100)
	const off = 50 // straddles sector boundaries at both ends
	type result struct{ put, del, write []byte }
	run := func(t *testing.T, opts fault.CrashOptions) result {
		ctx := t.Context()
		s := fault.New(mem.New(nil))
		for _, n := range []string{"put", "del", "write"} {
			if err := s.Put(ctx, n, old); err != nil {
				t.Fatal(err)
			}
		}
		var clones []fault.Store
		s.AddRule(fault.Rule{Match: fault.Mutations(), Action: fault.Call(func(op fault.Op) {
			c, err := s.CrashClone(opts)
			if err != nil {
				t.Error(err)
				return
			}
			clones = append(clones, c)
		})})
		if err := s.Put(ctx, "put", newData); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, "del"); err != nil {
			t.Fatal(err)
		}
		if err := s.(backend.Overwriter).WriteAt(ctx, "write", newData, off); err != nil {
			t.Fatal(err)
		}
		if len(clones) != 3 {
			t.Fatalf("%d clones", len(clones))
		}
		// Clone k saw mutation k in flight and mutations before it done.
		if got := readObj(t, clones[1], "put"); !bytes.Equal(got, newData) {
			t.Errorf("completed Put missing from a later clone")
		}
		if got := readObj(t, clones[2], "del"); got != nil {
			t.Errorf("completed Delete missing from a later clone")
		}
		return result{readObj(t, clones[0], "put"), readObj(t, clones[1], "del"), readObj(t, clones[2], "write")}
	}
	wantWrite := slices.Clone(old)
	copy(wantWrite[off:], newData)

	r := run(t, fault.CrashOptions{InFlight: fault.LoseInFlight})
	if !bytes.Equal(r.put, old) || !bytes.Equal(r.del, old) || !bytes.Equal(r.write, old) {
		t.Errorf("LoseInFlight: in-flight mutations happened")
	}
	r = run(t, fault.CrashOptions{InFlight: fault.CompleteInFlight})
	if !bytes.Equal(r.put, newData) || r.del != nil || !bytes.Equal(r.write, wantWrite) {
		t.Errorf("CompleteInFlight: in-flight mutations did not happen")
	}
	// Torn: every sector old or new, and over many seeds every outcome.
	var sawPut, sawDel [2]bool
	sawTorn := false
	for seed := range uint64(40) {
		r := run(t, fault.CrashOptions{InFlight: fault.TearInFlight, Seed: seed})
		sawPut[b2i(bytes.Equal(r.put, newData))] = true
		if !bytes.Equal(r.put, newData) && !bytes.Equal(r.put, old) {
			t.Fatalf("seed %d: torn Put is neither old nor new", seed)
		}
		sawDel[b2i(r.del == nil)] = true
		if r.del != nil && !bytes.Equal(r.del, old) {
			t.Fatalf("seed %d: torn Delete left changed data", seed)
		}
		if len(r.write) != len(old) {
			t.Fatalf("seed %d: torn write changed the size to %d", seed, len(r.write))
		}
		nNew := 0
		for sec := 0; sec < len(old)/512; sec++ {
			got := r.write[sec*512 : (sec+1)*512]
			switch {
			case bytes.Equal(got, old[sec*512:(sec+1)*512]):
			case bytes.Equal(got, wantWrite[sec*512:(sec+1)*512]):
				nNew++
			default:
				t.Fatalf("seed %d: sector %d is torn within itself", seed, sec)
			}
		}
		if nNew > 0 && nNew < len(old)/512 {
			sawTorn = true
		}
	}
	if sawPut != [2]bool{true, true} || sawDel != [2]bool{true, true} || !sawTorn {
		t.Errorf("TearInFlight outcomes not all seen: put %v delete %v torn write %v", sawPut, sawDel, sawTorn)
	}
}

// TestCrashAtEveryMutation runs a scripted workload once per mutation
// index, crashing at that index, and checks the clone against the model
// state after the mutations before it.
func TestCrashAtEveryMutation(t *testing.T) {
	type step struct {
		kind fault.Kind
		name string
		data []byte
		off  int64
	}
	script := []step{
		{fault.OpPut, "sb", []byte("v1"), 0},
		{fault.OpWriteAt, "log/0", []byte("rec1"), 0},
		{fault.OpWriteAt, "log/0", []byte("rec2"), 4},
		{fault.OpPut, "map/1", []byte("m1"), 0},
		{fault.OpPut, "sb", []byte("v2"), 0},
		{fault.OpDelete, "log/0", nil, 0},
		{fault.OpPut, "map/2", []byte("m2"), 0},
		{fault.OpDelete, "map/1", nil, 0},
	}
	apply := func(s backend.Store, st step) error {
		ctx := context.Background()
		switch st.kind {
		case fault.OpPut:
			return s.Put(ctx, st.name, st.data)
		case fault.OpDelete:
			return s.Delete(ctx, st.name)
		default:
			return s.(backend.Overwriter).WriteAt(ctx, st.name, st.data, st.off)
		}
	}
	// models[k] is the state after the first k steps.
	models := []map[string]string{{}}
	{
		m := mem.New(nil)
		for _, st := range script {
			if err := apply(m, st); err != nil {
				t.Fatal(err)
			}
			state := map[string]string{}
			_ = m.List(t.Context(), "", func(info backend.ObjectInfo) error {
				state[info.Name] = string(readObj(t, m, info.Name))
				return nil
			})
			models = append(models, state)
		}
	}
	for _, mode := range []fault.InFlight{fault.LoseInFlight, fault.CompleteInFlight} {
		for k := int64(0); ; k++ {
			s := fault.New(mem.New(nil))
			s.AddRule(fault.Rule{Match: fault.MutationIndex(k), Action: fault.Crash(fault.CrashOptions{InFlight: mode})})
			failedAt := -1
			for i, st := range script {
				if err := apply(s, st); err != nil {
					if !errors.Is(err, fault.ErrCrashed) || !errors.Is(err, backend.ErrUnavailable) {
						t.Fatalf("k=%d step %d: %v", k, i, err)
					}
					failedAt = i
					break
				}
			}
			c, ok := s.Crashed()
			if !ok {
				if k != int64(len(script)) || failedAt != -1 {
					t.Fatalf("k=%d: no crash (failed at %d)", k, failedAt)
				}
				break
			}
			if failedAt != int(k) {
				t.Fatalf("k=%d: workload failed at step %d", k, failedAt)
			}
			// After the crash every call fails.
			if _, err := s.Stat(t.Context(), "sb"); !errors.Is(err, fault.ErrCrashed) {
				t.Fatalf("k=%d: Stat after crash = %v", k, err)
			}
			want := models[k]
			if mode == fault.CompleteInFlight {
				want = models[k+1]
			}
			got := map[string]string{}
			if err := c.List(t.Context(), "", func(info backend.ObjectInfo) error {
				got[info.Name] = string(readObj(t, c, info.Name))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%v k=%d: clone %v, want %v", mode, k, got, want)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestCrashCloneConcurrent takes torn crash clones while writers replace
// objects with uniform versions, and checks that every clone holds only
// whole versions, under -race.
func TestCrashCloneConcurrent(t *testing.T) {
	ctx := t.Context()
	s := fault.New(mem.New(nil))
	s.AddRule(fault.Rule{Match: fault.Probability(0.3, 9), Action: fault.Delay(100 * time.Microsecond)})
	const writers, rounds = 4, 60
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("obj/%d", w)
			for r := 1; r <= rounds; r++ {
				var err error
				if r%3 == 0 {
					err = s.(backend.Overwriter).WriteAt(ctx, name, bytes.Repeat([]byte{byte(r)}, 512), 512)
				} else {
					err = s.Put(ctx, name, bytes.Repeat([]byte{byte(r)}, 1024))
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var cwg sync.WaitGroup
	cwg.Add(1)
	go func() {
		defer cwg.Done()
		for seed := uint64(0); ; seed++ {
			select {
			case <-stop:
				return
			default:
			}
			c, err := s.CrashClone(fault.CrashOptions{InFlight: fault.TearInFlight, Seed: seed})
			if err != nil {
				t.Error(err)
				return
			}
			for w := range writers {
				got := readObj(t, c, fmt.Sprintf("obj/%d", w))
				if got == nil {
					continue
				}
				// Each sector is uniform: a sector-sized write or a Put.
				for sec := range 2 {
					part := got[sec*512 : (sec+1)*512]
					if bytes.Count(part, part[:1]) != len(part) {
						t.Errorf("seed %d: obj/%d sector %d is not uniform", seed, w, sec)
					}
				}
			}
			_ = c.Close()
		}
	}()
	wg.Wait()
	close(stop)
	cwg.Wait()
}

func TestClose(t *testing.T) {
	s := fault.New(mem.New(nil))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
	if _, err := s.Inner().Stat(t.Context(), "a"); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("inner store not closed: %v", err)
	}
}

func TestKindString(t *testing.T) {
	want := []string{"ReadAt", "Put", "Delete", "List", "Stat", "WriteAt", "Kind(6)"}
	for i, w := range want {
		if got := fault.Kind(i).String(); got != w {
			t.Errorf("Kind(%d) = %q, want %q", i, got, w)
		}
	}
}
