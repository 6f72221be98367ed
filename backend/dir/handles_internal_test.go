package dir

import (
	"bytes"
	"testing"
)

// TestFrontDrop: a Put that replaces an object while a read of the old
// file is still in flight must take the old handle out of the front
// table too, or the next read (which starts after the Put returned)
// would find it there, still open, and read the replaced file.
func TestFrontDrop(t *testing.T) {
	s, err := Open(t.Context(), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	p := make([]byte, 4)
	for v := byte(1); v <= 3; v++ {
		if err := s.Put(ctx, "o", bytes.Repeat([]byte{v}, 4)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ReadAt(ctx, "o", p, 0); err != nil || p[0] != v {
			t.Fatalf("version %d: read %v, %v", v, p, err)
		}
		if h := s.handles.slot("o").Load(); h == nil || h.name != "o" {
			t.Fatalf("version %d: the handle read is not in the front table", v)
		}
		// A read in flight on the current handle across the next Put.
		inFlight, err := s.handles.get("o", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, "o", bytes.Repeat([]byte{v + 10}, 4)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ReadAt(ctx, "o", p, 0); err != nil || p[0] != v+10 {
			t.Fatalf("read after the Put of %d returned, with a read of the old file in flight: %v, %v", v+10, p, err)
		}
		s.handles.release(inFlight)
	}
}
