package dir_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lunway/lunway/backend"
)

// TestReadHandles: reads keep handles of objects open; a Put (a new file
// by rename) or a Delete must never leave a reader on the old file, also
// with readers racing the changes, and more objects than handles.
func TestReadHandles(t *testing.T) {
	s := open(t, t.TempDir(), nil)
	ctx := t.Context()
	content := func(i, v int) []byte { return bytes.Repeat([]byte{byte(i), byte(v)}, 512) }
	const objects = 300 // more than the handles kept
	for i := range objects {
		if err := s.Put(ctx, fmt.Sprintf("o/%d", i), content(i, 0)); err != nil {
			t.Fatal(err)
		}
	}
	read := func(name string) ([]byte, error) {
		p := make([]byte, 1024)
		_, err := s.ReadAt(ctx, name, p, 0)
		return p, err
	}
	for v := 1; v <= 3; v++ {
		for i := range objects {
			name := fmt.Sprintf("o/%d", i)
			if got, err := read(name); err != nil || !bytes.Equal(got, content(i, v-1)) {
				t.Fatalf("%s before version %d: %v", name, v, err)
			}
			if err := s.Put(ctx, name, content(i, v)); err != nil {
				t.Fatal(err)
			}
			if got, err := read(name); err != nil || !bytes.Equal(got, content(i, v)) {
				t.Fatalf("%s right after Put of version %d: %v", name, v, err)
			}
		}
	}
	if err := s.Delete(ctx, "o/7"); err != nil {
		t.Fatal(err)
	}
	if _, err := read("o/7"); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("read after Delete = %v; want ErrNotFound", err)
	}

	// Racing: each writer puts increasing versions; once its Put returned,
	// no read that starts later may see an older one.
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			name := fmt.Sprintf("race/%d", w)
			for v := range 200 {
				if err := s.Put(ctx, name, content(w, v)); err != nil {
					t.Error(err)
					return
				}
				for range 3 {
					got, err := read(name)
					if err != nil || got[1] < byte(v) {
						t.Errorf("%s: read version %d after Put of %d: %v", name, got[1], v, err)
						return
					}
				}
			}
		})
		wg.Go(func() {
			name := fmt.Sprintf("race/%d", w)
			for range 600 {
				if _, err := read(name); err != nil && !errors.Is(err, backend.ErrNotFound) {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestReadHandlesChurn races many readers over more objects than the
// store keeps handles for (so hits, misses and evictions interleave)
// with Puts and Deletes: no read may fail on a handle closed under it,
// and none may return a version older than the last Put that returned
// before the read started.
func TestReadHandlesChurn(t *testing.T) {
	s := open(t, t.TempDir(), nil)
	ctx := t.Context()
	const objects = 400 // more than the handles kept
	content := func(i, v int) []byte { return bytes.Repeat([]byte{byte(i), byte(v)}, 256) }
	var versions [objects]atomic.Int32 // last version whose Put returned
	for i := range objects {
		if err := s.Put(ctx, fmt.Sprintf("c/%d", i), content(i, 0)); err != nil {
			t.Fatal(err)
		}
	}
	rounds := 4000
	if testing.Short() {
		rounds = 500
	}
	var wg sync.WaitGroup
	for r := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			p := make([]byte, 512)
			for range rounds {
				i := rng.IntN(objects)
				min := versions[i].Load()
				if _, err := s.ReadAt(ctx, fmt.Sprintf("c/%d", i), p, 0); err != nil {
					t.Errorf("read c/%d: %v", i, err)
					return
				}
				if p[0] != byte(i) || int32(p[1]) < min {
					t.Errorf("read c/%d: object %d version %d, want version >= %d", i, p[0], p[1], min)
					return
				}
			}
		})
	}
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(99, 1))
		for range rounds / 8 {
			i := rng.IntN(objects)
			v := versions[i].Load() + 1
			if v > 250 {
				continue
			}
			if err := s.Put(ctx, fmt.Sprintf("c/%d", i), content(i, int(v))); err != nil {
				t.Error(err)
				return
			}
			versions[i].Store(v)
		}
	})
	wg.Wait()
}
