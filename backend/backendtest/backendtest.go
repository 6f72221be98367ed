package backendtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lunway/lunway/backend"
)

// Run runs the conformance suite against stores made by newStore.
func Run(t *testing.T, newStore func(t *testing.T) backend.Store) {
	t.Helper()
	open := func(t *testing.T) backend.Store {
		t.Helper()
		s := newStore(t)
		if s == nil {
			t.Fatal("newStore returned nil")
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil && !errors.Is(err, backend.ErrClosed) {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s backend.Store)
	}{
		{"Empty", testEmpty},
		{"RoundTrip", testRoundTrip},
		{"ReadAtEdges", testReadAtEdges},
		{"Missing", testMissing},
		{"Replace", testReplace},
		{"NoAliasing", testNoAliasing},
		{"Names", testNames},
		{"InvalidNames", testInvalidNames},
		{"List", testList},
		{"ListCallbackUsesStore", testListCallbackUsesStore},
		{"AtomicReplace", testAtomicReplace},
		{"ConcurrentObjects", testConcurrentObjects},
		{"Context", testContext},
		{"Close", testClose},
		{"Model", testModel},
		{"Overwriter", testOverwriter},
		{"OverwriterConcurrent", testOverwriterConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// pattern returns n bytes that depend on seed and on the position, so that
// misplaced data is detected.
func pattern(seed, n int) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func mustPut(t *testing.T, s backend.Store, name string, data []byte) {
	t.Helper()
	if err := s.Put(t.Context(), name, data); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", name, len(data), err)
	}
}

// readAll reads a whole object through Stat and ReadAt.
func readAll(t *testing.T, s backend.Store, name string) []byte {
	t.Helper()
	info, err := s.Stat(t.Context(), name)
	if err != nil {
		t.Fatalf("Stat(%q): %v", name, err)
	}
	if info.Name != name {
		t.Fatalf("Stat(%q).Name = %q", name, info.Name)
	}
	p := make([]byte, info.Size)
	n, err := s.ReadAt(t.Context(), name, p, 0)
	if err != nil || n != len(p) {
		t.Fatalf("ReadAt(%q, %d bytes, 0) = %d, %v; want %d, nil", name, len(p), n, err, len(p))
	}
	return p
}

func checkObject(t *testing.T, s backend.Store, name string, want []byte) {
	t.Helper()
	got := readAll(t, s, name)
	if !bytes.Equal(got, want) {
		t.Fatalf("object %q: %s", name, diff(got, want))
	}
}

// diff describes how got differs from want, briefly.
func diff(got, want []byte) string {
	if len(got) != len(want) {
		return fmt.Sprintf("size %d, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			return fmt.Sprintf("first difference at byte %d: %#02x, want %#02x", i, got[i], want[i])
		}
	}
	return "equal"
}

func listNames(t *testing.T, s backend.Store, prefix string) []string {
	t.Helper()
	var names []string
	err := s.List(t.Context(), prefix, func(info backend.ObjectInfo) error {
		names = append(names, info.Name)
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return names
}

func testEmpty(t *testing.T, s backend.Store) {
	if names := listNames(t, s, ""); len(names) != 0 {
		t.Fatalf("new store lists %q", names)
	}
	mustPut(t, s, "empty", nil)
	info, err := s.Stat(t.Context(), "empty")
	if err != nil || info.Size != 0 || info.Name != "empty" {
		t.Fatalf("Stat(empty) = %+v, %v; want size 0", info, err)
	}
	n, err := s.ReadAt(t.Context(), "empty", make([]byte, 1), 0)
	if n != 0 || err != io.EOF {
		t.Fatalf("ReadAt(empty, 1 byte, 0) = %d, %v; want 0, io.EOF", n, err)
	}
	if names := listNames(t, s, ""); !slices.Equal(names, []string{"empty"}) {
		t.Fatalf("List = %q, want [empty]", names)
	}
	if !info.ModTime.IsZero() && info.ModTime.After(time.Now().Add(time.Hour)) {
		t.Fatalf("ModTime %v is in the future", info.ModTime)
	}
}

func testRoundTrip(t *testing.T, s backend.Store) {
	sizes := []int{1, 7, 511, 512, 513, 4096, 4096*3 + 5, 1 << 20, 4<<20 + 3}
	for i, size := range sizes {
		name := "rt/obj-" + strconv.Itoa(size)
		data := pattern(i+1, size)
		mustPut(t, s, name, data)
		checkObject(t, s, name, data)
		// Sub-ranges at assorted alignments.
		for _, r := range [][2]int{{0, 1}, {1, 1}, {size / 2, size / 3}, {size - 1, 1}, {size / 7, size - size/7}} {
			off, n := r[0], r[1]
			if n == 0 || off+n > size {
				continue
			}
			p := make([]byte, n)
			got, err := s.ReadAt(t.Context(), name, p, int64(off))
			if err != nil || got != n {
				t.Fatalf("ReadAt(%q, %d bytes, %d) = %d, %v", name, n, off, got, err)
			}
			if !bytes.Equal(p, data[off:off+n]) {
				t.Fatalf("ReadAt(%q, %d bytes, %d): %s", name, n, off, diff(p, data[off:off+n]))
			}
		}
	}
	for i, size := range sizes {
		checkObject(t, s, "rt/obj-"+strconv.Itoa(size), pattern(i+1, size))
	}
}

func testReadAtEdges(t *testing.T, s backend.Store) {
	data := pattern(3, 1000)
	mustPut(t, s, "edges", data)
	tests := []struct {
		off     int64
		len     int
		wantN   int
		wantErr error // nil, io.EOF
	}{
		{0, 1000, 1000, nil}, // exactly the object
		{0, 0, 0, nil},       // empty read
		{500, 0, 0, nil},     // empty read inside
		{999, 1, 1, nil},     // last byte
		{600, 400, 400, nil}, // up to the end exactly
		{600, 401, 400, io.EOF},
		{0, 4096, 1000, io.EOF},
		{1000, 1, 0, io.EOF}, // at the end
		{1001, 1, 0, io.EOF}, // past the end
		{1 << 40, 10, 0, io.EOF},
	}
	for _, tt := range tests {
		p := bytes.Repeat([]byte{0xee}, tt.len)
		n, err := s.ReadAt(t.Context(), "edges", p, tt.off)
		if n != tt.wantN || err != tt.wantErr {
			t.Errorf("ReadAt(off=%d, len=%d) = %d, %v; want %d, %v", tt.off, tt.len, n, err, tt.wantN, tt.wantErr)
			continue
		}
		if n == 0 {
			continue
		}
		if want := data[tt.off : tt.off+int64(n)]; !bytes.Equal(p[:n], want) {
			t.Errorf("ReadAt(off=%d, len=%d): wrong data: %s", tt.off, tt.len, diff(p[:n], want))
		}
	}
	n, err := s.ReadAt(t.Context(), "edges", make([]byte, 8), -1)
	if err == nil || n != 0 {
		t.Errorf("ReadAt(off=-1) = %d, %v; want 0 and an error", n, err)
	}
}

func testMissing(t *testing.T, s backend.Store) {
	ctx := t.Context()
	n, err := s.ReadAt(ctx, "missing", make([]byte, 4), 0)
	if n != 0 || !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("ReadAt(missing) = %d, %v; want ErrNotFound", n, err)
	}
	if _, err := s.Stat(ctx, "missing"); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Stat(missing) = %v; want ErrNotFound", err)
	}
	if _, err := s.Stat(ctx, "dir/missing"); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Stat(dir/missing) = %v; want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "missing"); err != nil {
		t.Errorf("Delete(missing) = %v; want nil", err)
	}
	if err := s.Delete(ctx, "dir/sub/missing"); err != nil {
		t.Errorf("Delete(dir/sub/missing) = %v; want nil", err)
	}
	mustPut(t, s, "gone", []byte("x"))
	if err := s.Delete(ctx, "gone"); err != nil {
		t.Fatalf("Delete(gone): %v", err)
	}
	if _, err := s.Stat(ctx, "gone"); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Stat after Delete = %v; want ErrNotFound", err)
	}
	if _, err := s.ReadAt(ctx, "gone", make([]byte, 1), 0); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("ReadAt after Delete = %v; want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "gone"); err != nil {
		t.Errorf("second Delete = %v; want nil", err)
	}
	// A directory-like prefix of an object is not an object.
	mustPut(t, s, "p/q/r", []byte("x"))
	for _, name := range []string{"p", "p/q"} {
		if _, err := s.Stat(ctx, name); !errors.Is(err, backend.ErrNotFound) {
			t.Errorf("Stat(%q) with object p/q/r = %v; want ErrNotFound", name, err)
		}
		if _, err := s.ReadAt(ctx, name, make([]byte, 1), 0); !errors.Is(err, backend.ErrNotFound) {
			t.Errorf("ReadAt(%q) with object p/q/r = %v; want ErrNotFound", name, err)
		}
		if err := s.Delete(ctx, name); err != nil {
			t.Errorf("Delete(%q) with object p/q/r = %v; want nil", name, err)
		}
	}
	checkObject(t, s, "p/q/r", []byte("x"))
	if names := listNames(t, s, ""); !slices.Equal(names, []string{"p/q/r"}) {
		t.Errorf("List = %q; want [p/q/r]", names)
	}
}

func testReplace(t *testing.T, s backend.Store) {
	for i, size := range []int{4096, 100, 100000, 0, 7} {
		data := pattern(10+i, size)
		mustPut(t, s, "replace/me", data)
		checkObject(t, s, "replace/me", data)
		if names := listNames(t, s, ""); !slices.Equal(names, []string{"replace/me"}) {
			t.Fatalf("List after replace = %q", names)
		}
	}
}

func testNoAliasing(t *testing.T, s backend.Store) {
	data := pattern(4, 8192)
	orig := slices.Clone(data)
	mustPut(t, s, "alias", data)
	clear(data) // the store must have copied
	checkObject(t, s, "alias", orig)
	p := make([]byte, 100)
	if _, err := s.ReadAt(t.Context(), "alias", p, 0); err != nil {
		t.Fatal(err)
	}
	clear(p)
	checkObject(t, s, "alias", orig)
}

// names has objects that collide in naive mappings: a name that is also a
// "directory" of others, and neighbours of '/' in byte order ('-' and '.'
// sort before it, '0' after).
var names = []string{
	"a", "a/b", "a/b/c", "a/bc", "a-b", "a.b", "a0", "a/b-", "a/b.c", "A", "_x", "b",
	"x/y/z/w/v", "x.y", "-", ".a", "a..b", "..a",
	strings.Repeat("n", backend.MaxNameLen),
	strings.Repeat("d/", backend.MaxNameLen/2-1) + "e",
}

func testNames(t *testing.T, s backend.Store) {
	for i, name := range names {
		if err := backend.ValidName(name); err != nil {
			t.Fatalf("suite bug: %v", err)
		}
		mustPut(t, s, name, pattern(100+i, 10+i))
	}
	for i, name := range names {
		checkObject(t, s, name, pattern(100+i, 10+i))
	}
	want := slices.Sorted(slices.Values(names))
	if got := listNames(t, s, ""); !slices.Equal(got, want) {
		t.Fatalf("List order:\n got %q\nwant %q", got, want)
	}
	// Deleting a name that is also a directory keeps what is below it, and
	// the other way round.
	for _, name := range []string{"a", "a/b/c", "x/y/z/w/v"} {
		if err := s.Delete(t.Context(), name); err != nil {
			t.Fatalf("Delete(%q): %v", name, err)
		}
	}
	want = slices.DeleteFunc(want, func(n string) bool { return n == "a" || n == "a/b/c" || n == "x/y/z/w/v" })
	if got := listNames(t, s, ""); !slices.Equal(got, want) {
		t.Fatalf("List after deletes:\n got %q\nwant %q", got, want)
	}
	for i, name := range names {
		if slices.Contains(want, name) {
			checkObject(t, s, name, pattern(100+i, 10+i))
		}
	}
	// Recreate below and at a deleted name.
	mustPut(t, s, "a", []byte("again"))
	mustPut(t, s, "x/y/z/w/v", []byte("deep"))
	checkObject(t, s, "a", []byte("again"))
	checkObject(t, s, "x/y/z/w/v", []byte("deep"))
}

var invalidNames = []string{
	"", "/a", "a/", "a//b", "./a", "a/./b", "a/..", "../a", ".", "..", "a b", "a\x00b", "a\\b",
	"é", "a~", "a*", "a:b", "a\nb", "%2F", "a?b", strings.Repeat("n", backend.MaxNameLen+1),
}

func testInvalidNames(t *testing.T, s backend.Store) {
	ctx := t.Context()
	ow, _ := s.(backend.Overwriter)
	for _, name := range invalidNames {
		if _, err := s.ReadAt(ctx, name, make([]byte, 1), 0); !errors.Is(err, backend.ErrInvalidName) {
			t.Errorf("ReadAt(%q) = %v; want ErrInvalidName", name, err)
		}
		if err := s.Put(ctx, name, []byte("x")); !errors.Is(err, backend.ErrInvalidName) {
			t.Errorf("Put(%q) = %v; want ErrInvalidName", name, err)
		}
		if err := s.Delete(ctx, name); !errors.Is(err, backend.ErrInvalidName) {
			t.Errorf("Delete(%q) = %v; want ErrInvalidName", name, err)
		}
		if _, err := s.Stat(ctx, name); !errors.Is(err, backend.ErrInvalidName) {
			t.Errorf("Stat(%q) = %v; want ErrInvalidName", name, err)
		}
		if ow != nil {
			if err := ow.WriteAt(ctx, name, []byte("x"), 0); !errors.Is(err, backend.ErrInvalidName) {
				t.Errorf("WriteAt(%q) = %v; want ErrInvalidName", name, err)
			}
		}
	}
	if got := listNames(t, s, ""); len(got) != 0 {
		t.Errorf("invalid names created objects: %q", got)
	}
}

func testList(t *testing.T, s backend.Store) {
	ctx := t.Context()
	sizes := map[string]int64{}
	for i, name := range names {
		mustPut(t, s, name, pattern(i, 3*i))
		sizes[name] = int64(3 * i)
	}
	for _, prefix := range []string{"", "a", "a/", "a/b", "a/b/", "a.", "x/y/z/w/v", "x/y/z/w/v/", "zz", "-", "."} {
		var want []string
		for _, n := range names {
			if strings.HasPrefix(n, prefix) {
				want = append(want, n)
			}
		}
		slices.Sort(want)
		var got []string
		err := s.List(ctx, prefix, func(info backend.ObjectInfo) error {
			got = append(got, info.Name)
			if info.Size != sizes[info.Name] {
				t.Errorf("List(%q): %q has size %d, want %d", prefix, info.Name, info.Size, sizes[info.Name])
			}
			return nil
		})
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("List(%q):\n got %q\nwant %q", prefix, got, want)
		}
	}
	// An error from fn stops the listing and is returned.
	stop := errors.New("stop here")
	calls := 0
	err := s.List(ctx, "", func(backend.ObjectInfo) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 3 {
		t.Errorf("List with failing fn = %v after %d calls; want %v after 3", err, calls, stop)
	}
}

func testListCallbackUsesStore(t *testing.T, s backend.Store) {
	ctx := t.Context()
	for i := range 20 {
		mustPut(t, s, fmt.Sprintf("gc/%03d", i), []byte{byte(i)})
	}
	mustPut(t, s, "keep", []byte("k"))
	var seen []string
	err := s.List(ctx, "gc/", func(info backend.ObjectInfo) error {
		seen = append(seen, info.Name)
		p := make([]byte, 1)
		if _, err := s.ReadAt(ctx, info.Name, p, 0); err != nil {
			return fmt.Errorf("ReadAt inside List: %w", err)
		}
		return s.Delete(ctx, info.Name)
	})
	if err != nil {
		t.Fatalf("List deleting as it goes: %v", err)
	}
	if len(seen) != 20 {
		t.Fatalf("List saw %d objects, want 20", len(seen))
	}
	if got := listNames(t, s, ""); !slices.Equal(got, []string{"keep"}) {
		t.Fatalf("after deleting while listing: %q", got)
	}
}

// testAtomicReplace replaces one object with versions of different sizes,
// each filled with one byte value, while readers check that every read sees
// exactly one version.
func testAtomicReplace(t *testing.T, s backend.Store) {
	const versions = 60
	size := func(v int) int { return 1000 + (v*7919)%20000 }
	mustPut(t, s, "atomic/obj", bytes.Repeat([]byte{0}, size(0)))
	ctx := t.Context()
	var wg sync.WaitGroup
	done := make(chan struct{})
	errc := make(chan error, 8)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		for v := 1; v < versions; v++ {
			if err := s.Put(ctx, "atomic/obj", bytes.Repeat([]byte{byte(v)}, size(v))); err != nil {
				errc <- fmt.Errorf("Put version %d: %w", v, err)
				return
			}
		}
	}()
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := make([]byte, 24000)
			for i := 0; ; i++ {
				if i > 0 {
					select {
					case <-done:
						return
					default:
					}
				}
				off := int64(0)
				if r > 0 {
					off = int64(i % 900)
				}
				n, err := s.ReadAt(ctx, "atomic/obj", p, off)
				if err != nil && err != io.EOF {
					errc <- fmt.Errorf("ReadAt: %w", err)
					return
				}
				if n == 0 {
					errc <- fmt.Errorf("ReadAt at %d read nothing", off)
					return
				}
				v := p[0]
				if int(off)+n != size(int(v)) {
					errc <- fmt.Errorf("read %d bytes at %d of version %d, whose size is %d", n, off, v, size(int(v)))
					return
				}
				if i := bytes.IndexFunc(p[:n], func(c rune) bool { return byte(c) != v }); i >= 0 {
					errc <- fmt.Errorf("torn read: byte %d is %d, byte 0 is %d", i, p[i], v)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	checkObject(t, s, "atomic/obj", bytes.Repeat([]byte{versions - 1}, size(versions-1)))
}

func testConcurrentObjects(t *testing.T, s backend.Store) {
	const workers, rounds = 8, 20
	ctx := t.Context()
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- func() error {
				for r := range rounds {
					name := fmt.Sprintf("w%d/o%d", w, r%5)
					data := pattern(w*1000+r, 100+r*37)
					if err := s.Put(ctx, name, data); err != nil {
						return err
					}
					p := make([]byte, len(data))
					if n, err := s.ReadAt(ctx, name, p, 0); err != nil || n != len(p) {
						return fmt.Errorf("ReadAt(%q) = %d, %v", name, n, err)
					}
					if !bytes.Equal(p, data) {
						return fmt.Errorf("object %q: %s", name, diff(p, data))
					}
					if info, err := s.Stat(ctx, name); err != nil || info.Size != int64(len(data)) {
						return fmt.Errorf("Stat(%q) = %+v, %v", name, info, err)
					}
					if r%3 == 2 {
						if err := s.Delete(ctx, name); err != nil {
							return err
						}
					}
					if err := s.List(ctx, fmt.Sprintf("w%d/", w), func(backend.ObjectInfo) error { return nil }); err != nil {
						return err
					}
				}
				return nil
			}()
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Error(err)
		}
	}
}

func testContext(t *testing.T, s backend.Store) {
	mustPut(t, s, "ctx/old", []byte("old"))
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	expired, cancel2 := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel2()
	for _, c := range []struct {
		ctx  context.Context
		want error
	}{{canceled, context.Canceled}, {expired, context.DeadlineExceeded}} {
		ctx, want := c.ctx, c.want
		if _, err := s.ReadAt(ctx, "ctx/old", make([]byte, 3), 0); !errors.Is(err, want) {
			t.Errorf("ReadAt = %v; want %v", err, want)
		}
		if _, err := s.Stat(ctx, "ctx/old"); !errors.Is(err, want) {
			t.Errorf("Stat = %v; want %v", err, want)
		}
		if err := s.List(ctx, "", func(backend.ObjectInfo) error { return nil }); !errors.Is(err, want) {
			t.Errorf("List = %v; want %v", err, want)
		}
		newData := bytes.Repeat([]byte("new"), 1000)
		if err := s.Put(ctx, "ctx/old", newData); !errors.Is(err, want) {
			t.Errorf("Put = %v; want %v", err, want)
		}
		if got := readAll(t, s, "ctx/old"); !bytes.Equal(got, []byte("old")) && !bytes.Equal(got, newData) {
			t.Errorf("Put with a done context left a mix: %d bytes", len(got))
		}
		mustPut(t, s, "ctx/old", []byte("old"))
		if err := s.Put(ctx, "ctx/new", newData); !errors.Is(err, want) {
			t.Errorf("Put(new) = %v; want %v", err, want)
		}
		if info, err := s.Stat(t.Context(), "ctx/new"); err == nil && info.Size != int64(len(newData)) {
			t.Errorf("Put with a done context left a partial object of %d bytes", info.Size)
		}
		if err := s.Delete(ctx, "ctx/old"); !errors.Is(err, want) {
			t.Errorf("Delete = %v; want %v", err, want)
		}
		mustPut(t, s, "ctx/old", []byte("old"))
		if ow, ok := s.(backend.Overwriter); ok {
			if err := ow.WriteAt(ctx, "ctx/old", []byte("NEW"), 0); !errors.Is(err, want) {
				t.Errorf("WriteAt = %v; want %v", err, want)
			}
		}
		mustPut(t, s, "ctx/old", []byte("old"))
	}
	// A List whose context ends midway stops with the context's error.
	for i := range 10 {
		mustPut(t, s, fmt.Sprintf("ctx/l%d", i), nil)
	}
	ctx, cancel3 := context.WithCancel(t.Context())
	defer cancel3()
	calls := 0
	err := s.List(ctx, "ctx/l", func(backend.ObjectInfo) error {
		calls++
		if calls == 2 {
			cancel3()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("List canceled in fn = %v after %d calls; want context.Canceled", err, calls)
	}
}

func testClose(t *testing.T, s backend.Store) {
	ctx := t.Context()
	mustPut(t, s, "c", []byte("x"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.ReadAt(ctx, "c", make([]byte, 1), 0); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("ReadAt after Close = %v; want ErrClosed", err)
	}
	if err := s.Put(ctx, "c", []byte("y")); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("Put after Close = %v; want ErrClosed", err)
	}
	if err := s.Delete(ctx, "c"); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("Delete after Close = %v; want ErrClosed", err)
	}
	if _, err := s.Stat(ctx, "c"); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("Stat after Close = %v; want ErrClosed", err)
	}
	called := false
	if err := s.List(ctx, "", func(backend.ObjectInfo) error { called = true; return nil }); !errors.Is(err, backend.ErrClosed) || called {
		t.Errorf("List after Close = %v (fn called: %v); want ErrClosed", err, called)
	}
	if ow, ok := s.(backend.Overwriter); ok {
		if err := ow.WriteAt(ctx, "c", []byte("y"), 0); !errors.Is(err, backend.ErrClosed) {
			t.Errorf("WriteAt after Close = %v; want ErrClosed", err)
		}
	}
	if err := s.Close(); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("second Close = %v; want ErrClosed", err)
	}
}

func testOverwriter(t *testing.T, s backend.Store) {
	ow, ok := s.(backend.Overwriter)
	if !ok {
		t.Skip("store does not implement backend.Overwriter")
	}
	ctx := t.Context()
	write := func(name string, p []byte, off int64) {
		t.Helper()
		if err := ow.WriteAt(ctx, name, p, off); err != nil {
			t.Fatalf("WriteAt(%q, %d bytes, %d): %v", name, len(p), off, err)
		}
	}
	// Creation at offset 0 and at an offset (zeros before).
	write("ow/a", []byte("hello"), 0)
	checkObject(t, s, "ow/a", []byte("hello"))
	write("ow/b/c", []byte("tail"), 1000)
	checkObject(t, s, "ow/b/c", append(make([]byte, 1000), "tail"...))

	// Overwrite in the middle, extend, unaligned and sector-straddling.
	model := pattern(7, 10000)
	mustPut(t, s, "ow/m", model)
	for i, w := range []struct{ off, n int }{{0, 512}, {100, 7}, {511, 2}, {4096, 4096}, {9990, 30}, {12000, 513}, {5000, 0}} {
		p := pattern(200+i, w.n)
		write("ow/m", p, int64(w.off))
		if end := w.off + w.n; w.n > 0 && end > len(model) {
			model = append(model, make([]byte, end-len(model))...)
		}
		copy(model[w.off:], p)
		checkObject(t, s, "ow/m", model)
	}
	names := listNames(t, s, "ow/")
	if want := []string{"ow/a", "ow/b/c", "ow/m"}; !slices.Equal(names, want) {
		t.Fatalf("List = %q; want %q", names, want)
	}
	// Put replaces an overwritten object whole; WriteAt then modifies it.
	mustPut(t, s, "ow/m", []byte("short"))
	checkObject(t, s, "ow/m", []byte("short"))
	write("ow/m", []byte("S"), 0)
	checkObject(t, s, "ow/m", []byte("Short"))
	// Deleted objects are recreated.
	if err := s.Delete(ctx, "ow/m"); err != nil {
		t.Fatal(err)
	}
	write("ow/m", []byte("new"), 2)
	checkObject(t, s, "ow/m", []byte("\x00\x00new"))
	// A name that is also a "directory".
	write("ow/a/x", []byte("below"), 0)
	checkObject(t, s, "ow/a", []byte("hello"))
	checkObject(t, s, "ow/a/x", []byte("below"))
	if err := ow.WriteAt(ctx, "ow/a", []byte("x"), -1); err == nil {
		t.Errorf("WriteAt at offset -1 succeeded")
	}
	checkObject(t, s, "ow/a", []byte("hello"))
}

func testOverwriterConcurrent(t *testing.T, s backend.Store) {
	ow, ok := s.(backend.Overwriter)
	if !ok {
		t.Skip("store does not implement backend.Overwriter")
	}
	const workers, perWorker, sector = 4, 16, 512
	ctx := t.Context()
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				// Worker w owns sectors w, w+workers, w+2*workers, ...
				sec := int64(i*workers + w)
				if err := ow.WriteAt(ctx, "owc/obj", bytes.Repeat([]byte{byte(w + 1)}, sector), sec*sector); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	got := readAll(t, s, "owc/obj")
	if len(got) != workers*perWorker*sector {
		t.Fatalf("size %d, want %d", len(got), workers*perWorker*sector)
	}
	for sec := range workers * perWorker {
		want := byte(sec%workers + 1)
		for _, c := range got[sec*sector : (sec+1)*sector] {
			if c != want {
				t.Fatalf("sector %d holds %d, want %d", sec, c, want)
			}
		}
	}
}

// seed returns the model test's seed: LUNWAY_BACKENDTEST_SEED or random.
func seed(t *testing.T) uint64 {
	if v := os.Getenv("LUNWAY_BACKENDTEST_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("LUNWAY_BACKENDTEST_SEED=%q: %v", v, err)
		}
		return s
	}
	return rand.Uint64()
}

// testModel drives a random operation stream against a map model.
func testModel(t *testing.T, s backend.Store) {
	sd := seed(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("model seed %d (rerun with LUNWAY_BACKENDTEST_SEED=%d)", sd, sd)
		}
	})
	rng := rand.New(rand.NewPCG(sd, 0x6c756e776179))
	ctx := t.Context()
	ow, _ := s.(backend.Overwriter)
	pool := []string{"m", "m/a", "m/a/b", "m/a-b", "m/ab", "m0", "n/x", "n/x/y", "n.z"}
	model := map[string][]byte{}
	ops := 400
	if testing.Short() {
		ops = 150
	}
	for i := range ops {
		name := pool[rng.IntN(len(pool))]
		step := func(format string, args ...any) string {
			return fmt.Sprintf("op %d: ", i) + fmt.Sprintf(format, args...)
		}
		switch k := rng.IntN(10); {
		case k < 3:
			data := pattern(rng.Int(), rng.IntN(3000))
			if err := s.Put(ctx, name, data); err != nil {
				t.Fatal(step("Put(%q): %v", name, err))
			}
			model[name] = data
		case k < 4:
			if err := s.Delete(ctx, name); err != nil {
				t.Fatal(step("Delete(%q): %v", name, err))
			}
			delete(model, name)
		case k < 6 && ow != nil:
			off, n := rng.IntN(4000), rng.IntN(1500)
			p := pattern(rng.Int(), n)
			if err := ow.WriteAt(ctx, name, p, int64(off)); err != nil {
				t.Fatal(step("WriteAt(%q, %d, %d): %v", name, n, off, err))
			}
			m := model[name]
			if m == nil {
				m = []byte{}
			}
			if n > 0 {
				if off+n > len(m) {
					m = append(m, make([]byte, off+n-len(m))...)
				}
				copy(m[off:], p)
			}
			model[name] = m
		case k < 8:
			off, n := rng.IntN(3500), rng.IntN(1500)
			p := make([]byte, n)
			got, err := s.ReadAt(ctx, name, p, int64(off))
			m, exists := model[name]
			switch {
			case !exists:
				if !errors.Is(err, backend.ErrNotFound) {
					t.Fatal(step("ReadAt(%q) = %v; want ErrNotFound", name, err))
				}
			default:
				want := 0
				if off < len(m) {
					want = min(n, len(m)-off)
				}
				var wantErr error
				if want < n {
					wantErr = io.EOF
				}
				if got != want || err != wantErr {
					t.Fatal(step("ReadAt(%q, %d, %d) = %d, %v; want %d, %v", name, n, off, got, err, want, wantErr))
				}
				if got > 0 && !bytes.Equal(p[:got], m[off:off+got]) {
					t.Fatal(step("ReadAt(%q, %d, %d): %s", name, n, off, diff(p[:got], m[off:off+got])))
				}
			}
		case k < 9:
			info, err := s.Stat(ctx, name)
			m, exists := model[name]
			if !exists && !errors.Is(err, backend.ErrNotFound) || exists && (err != nil || info.Size != int64(len(m))) {
				t.Fatal(step("Stat(%q) = %+v, %v; model has %v, %d bytes", name, info, err, exists, len(m)))
			}
		default:
			prefix := name[:rng.IntN(len(name)+1)]
			var want []string
			for n := range model {
				if strings.HasPrefix(n, prefix) {
					want = append(want, n)
				}
			}
			slices.Sort(want)
			if got := listNames(t, s, prefix); !slices.Equal(got, want) {
				t.Fatal(step("List(%q) = %q; want %q", prefix, got, want))
			}
		}
	}
	for name, m := range model {
		checkObject(t, s, name, m)
	}
}
