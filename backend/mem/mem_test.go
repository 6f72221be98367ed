package mem_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/backendtest"
	"github.com/lunway/lunway/backend/mem"
)

func TestConformance(t *testing.T) {
	t.Run("overwriter", func(t *testing.T) {
		backendtest.Run(t, func(t *testing.T) backend.Store { return mem.New(nil) })
	})
	t.Run("put-only", func(t *testing.T) {
		backendtest.Run(t, func(t *testing.T) backend.Store {
			return mem.New(&mem.Options{DisableOverwriter: true})
		})
	})
	t.Run("clone", func(t *testing.T) {
		// A clone of an empty store is itself a conforming store.
		backendtest.Run(t, func(t *testing.T) backend.Store {
			c, err := mem.New(nil).Clone()
			if err != nil {
				t.Fatal(err)
			}
			return c
		})
	})
}

func TestOverwriterCapability(t *testing.T) {
	if _, ok := mem.New(nil).(backend.Overwriter); !ok {
		t.Error("default store does not implement Overwriter")
	}
	s := mem.New(&mem.Options{DisableOverwriter: true})
	if _, ok := s.(backend.Overwriter); ok {
		t.Error("store with DisableOverwriter implements Overwriter")
	}
	c, err := s.Clone()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(backend.Overwriter); ok {
		t.Error("clone of a put-only store implements Overwriter")
	}
}

func TestCloneIndependent(t *testing.T) {
	ctx := t.Context()
	s := mem.New(nil)
	if err := s.Put(ctx, "a", []byte("one")); err != nil {
		t.Fatal(err)
	}
	c, err := s.Clone()
	if err != nil {
		t.Fatal(err)
	}
	// Changes to either side do not show in the other.
	if err := s.(backend.Overwriter).WriteAt(ctx, "a", []byte("X"), 0); err != nil {
		t.Fatal(err)
	}
	if err := c.(backend.Overwriter).WriteAt(ctx, "a", []byte("Y"), 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, "b", []byte("b")); err != nil {
		t.Fatal(err)
	}
	read := func(s backend.Store, name string) string {
		p := make([]byte, 3)
		n, err := s.ReadAt(ctx, name, p, 0)
		if err != nil {
			return err.Error()
		}
		return string(p[:n])
	}
	if got := read(s, "a"); got != "Xne" {
		t.Errorf("original a = %q, want Xne", got)
	}
	if got := read(c, "a"); got != "oYe" {
		t.Errorf("clone a = %q, want oYe", got)
	}
	if _, err := s.Stat(ctx, "b"); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("object put in clone shows in original: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := read(c, "a"); got != "oYe" {
		t.Errorf("clone after original closed: %q", got)
	}
	if _, err := s.Clone(); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("Clone of closed store = %v; want ErrClosed", err)
	}
}

func TestCapacity(t *testing.T) {
	ctx := t.Context()
	s := mem.New(&mem.Options{CapacityBytes: 1000, MaxObjectBytes: 600})
	ow := s.(backend.Overwriter)
	steps := []struct {
		name    string
		do      func() error
		wantErr error
		used    int64
	}{
		{"put 400", func() error { return s.Put(ctx, "a", make([]byte, 400)) }, nil, 400},
		{"put 601 too big", func() error { return s.Put(ctx, "b", make([]byte, 601)) }, backend.ErrNoSpace, 400},
		{"put 600", func() error { return s.Put(ctx, "b", make([]byte, 600)) }, nil, 1000},
		{"put 1 full", func() error { return s.Put(ctx, "c", make([]byte, 1)) }, backend.ErrNoSpace, 1000},
		{"replace a smaller", func() error { return s.Put(ctx, "a", make([]byte, 100)) }, nil, 700},
		{"extend a past capacity", func() error { return ow.WriteAt(ctx, "a", []byte{1}, 400) }, backend.ErrNoSpace, 700},
		{"extend a within", func() error { return ow.WriteAt(ctx, "a", []byte{1}, 399) }, nil, 1000},
		{"overwrite within", func() error { return ow.WriteAt(ctx, "a", []byte{2}, 0) }, nil, 1000},
		{"huge offset", func() error { return ow.WriteAt(ctx, "d", []byte{1}, 1<<62) }, backend.ErrNoSpace, 1000},
		{"delete b", func() error { return s.Delete(ctx, "b") }, nil, 400},
	}
	for _, st := range steps {
		err := st.do()
		if !errors.Is(err, st.wantErr) || (st.wantErr == nil) != (err == nil) {
			t.Fatalf("%s: %v, want %v", st.name, err, st.wantErr)
		}
		_, used, err := s.Usage()
		if err != nil || used != st.used {
			t.Fatalf("%s: usage %d, %v; want %d", st.name, used, err, st.used)
		}
	}
	p := make([]byte, 400)
	if _, err := s.ReadAt(ctx, "a", p, 0); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 400)
	want[0], want[399] = 2, 1
	if !bytes.Equal(p, want) {
		t.Error("object a has the wrong contents after failed writes")
	}
	if _, err := s.Stat(ctx, "d"); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("failed WriteAt created d: %v", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []mem.Options{{CapacityBytes: -1}, {MaxObjectBytes: -1}} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v: Validate passed", o)
		}
	}
	if err := (&mem.Options{}).Validate(); err != nil {
		t.Errorf("zero options: %v", err)
	}
}

// TestEmptyWriteAt is a regression test: a zero-length WriteAt past the end
// of an object must neither panic nor extend it.
func TestEmptyWriteAt(t *testing.T) {
	ctx := t.Context()
	s := mem.New(nil)
	ow := s.(backend.Overwriter)
	if err := s.Put(ctx, "a", []byte("abc")); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 3, 4, 1 << 20} {
		if err := ow.WriteAt(ctx, "a", nil, off); err != nil {
			t.Fatalf("WriteAt(nil, %d): %v", off, err)
		}
	}
	if info, err := s.Stat(ctx, "a"); err != nil || info.Size != 3 {
		t.Fatalf("Stat = %+v, %v; want size 3", info, err)
	}
	if err := ow.WriteAt(ctx, "new", nil, 100); err != nil {
		t.Fatal(err)
	}
	if info, err := s.Stat(ctx, "new"); err != nil || info.Size != 0 {
		t.Fatalf("Stat(new) = %+v, %v; want an empty object", info, err)
	}
}
