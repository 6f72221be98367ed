package dir_test

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
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
