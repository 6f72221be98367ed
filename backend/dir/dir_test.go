package dir_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/backendtest"
	"github.com/lunway/lunway/backend/dir"
	"github.com/lunway/lunway/backend/fault"
	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/internal/testenv"
)

func open(t *testing.T, root string, opts *dir.Options) *dir.Store {
	t.Helper()
	s, err := dir.Open(t.Context(), root, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Store { return open(t, t.TempDir(), nil) })
}

// TestConformanceFault runs the suite on a fault store over a directory,
// which takes crash clones through List and ReadAt.
func TestConformanceFault(t *testing.T) {
	if testing.Short() {
		t.Skip("covered by TestConformance and backend/fault in -short mode")
	}
	backendtest.Run(t, func(t *testing.T) backend.Store {
		return fault.New(open(t, t.TempDir(), &dir.Options{NoSync: true}))
	})
}

func TestLayout(t *testing.T) {
	ctx := t.Context()
	root := t.TempDir()
	s := open(t, root, nil)
	defer s.Close()
	for _, name := range []string{"a", "a/b", "a/b/c", "vol/map/000001"} {
		if err := s.Put(ctx, name, []byte(name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.WriteAt(ctx, "vol/log/0", []byte("rec"), 0); err != nil {
		t.Fatal(err)
	}
	// The documented layout: directory elements end in '@'.
	for file, want := range map[string]string{
		"a":                    "a",
		"a@/b":                 "a/b",
		"a@/b@/c":              "a/b/c",
		"vol@/map@/000001":     "vol/map/000001",
		"vol@/log@/0":          "rec",
		filepath.Join("~lock"): "",
	} {
		got, err := os.ReadFile(filepath.Join(root, file))
		if err != nil || string(got) != want {
			t.Errorf("file %s = %q, %v; want %q", file, got, err, want)
		}
	}
}

func TestReopen(t *testing.T) {
	ctx := t.Context()
	root := t.TempDir()
	s := open(t, root, nil)
	if err := s.Put(ctx, "x/y", []byte("put")); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAt(ctx, "x/z", []byte("write"), 3); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "gone", []byte("put")); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, root, nil)
	defer s.Close()
	var got []string
	if err := s.List(ctx, "", func(info backend.ObjectInfo) error {
		p := make([]byte, info.Size)
		if _, err := s.ReadAt(ctx, info.Name, p, 0); err != nil {
			return err
		}
		got = append(got, info.Name+"="+string(p))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"x/y=put", "x/z=\x00\x00\x00write"}; !slices.Equal(got, want) {
		t.Errorf("after reopen: %q, want %q", got, want)
	}
}

func TestLock(t *testing.T) {
	root := t.TempDir()
	s := open(t, root, nil)
	if _, err := dir.Open(t.Context(), root, nil); !errors.Is(err, blockdev.ErrInUse) {
		t.Fatalf("second Open = %v; want ErrInUse", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, root, nil)
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestTempFilesAndForeignEntries(t *testing.T) {
	ctx := t.Context()
	root := t.TempDir()
	s := open(t, root, nil)
	if err := s.Put(ctx, "a/b", []byte("obj")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// What a crash during Put leaves, and entries that are not objects.
	leftovers := []string{"~tmp-x-1-2", "a@/~tmp-b-3-4"}
	foreign := []string{"x~y", "file@", "a@/bad name", "a@/é"}
	for _, f := range append(slices.Clone(leftovers), foreign...) {
		if err := os.WriteFile(filepath.Join(root, f), []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"plaindir", "a@/sub", "bad elem@", "empty@"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "plaindir", "z"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a@/b", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	s = open(t, root, nil)
	defer s.Close()
	for _, f := range leftovers {
		if _, err := os.Stat(filepath.Join(root, f)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("leftover %s not removed: %v", f, err)
		}
	}
	for _, f := range foreign {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("foreign %s removed: %v", f, err)
		}
	}
	// A temporary file of a Put in progress is not listed either.
	if err := os.WriteFile(filepath.Join(root, "a@", "~tmp-c-5-6"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := s.List(ctx, "", func(info backend.ObjectInfo) error {
		got = append(got, info.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a/b"}; !slices.Equal(got, want) {
		t.Errorf("List = %q; want %q", got, want)
	}
	if _, err := s.Stat(ctx, "link"); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Stat of a symlink = %v; want ErrNotFound", err)
	}
	if _, err := s.ReadAt(ctx, "link", make([]byte, 1), 0); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("ReadAt of a symlink = %v; want ErrNotFound", err)
	}
	if err := s.WriteAt(ctx, "link", []byte("x"), 0); err == nil {
		t.Error("WriteAt through a symlink succeeded")
	}
}

func TestMapErrors(t *testing.T) {
	ctx := t.Context()
	root := t.TempDir()
	s := open(t, root, nil)
	defer s.Close()
	// A file where a directory must go: ENOTDIR is "not found" for reads
	// and an error (not a panic, not success) for writes.
	if err := os.WriteFile(filepath.Join(root, "q@"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "q/r"); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Stat under a file = %v; want ErrNotFound", err)
	}
	if _, err := s.ReadAt(ctx, "q/r", make([]byte, 1), 0); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("ReadAt under a file = %v; want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "q/r"); err != nil {
		t.Errorf("Delete under a file = %v; want nil", err)
	}
	if err := s.Put(ctx, "q/r", []byte("x")); err == nil {
		t.Error("Put under a file succeeded")
	}
	var pe *fs.PathError
	if _, err := s.Stat(ctx, "missing"); !errors.As(err, &pe) || !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Stat(missing) = %v; want ErrNotFound wrapping *fs.PathError", err)
	}
}

// TestNoSpace fills a small tmpfs.
func TestNoSpace(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "mounting a tmpfs needs root")
	}
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=256k"); err != nil {
		testenv.Unavailable(t, "mount tmpfs: "+err.Error())
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	ctx := t.Context()
	s := open(t, mnt, nil)
	defer s.Close()
	big := bytes.Repeat([]byte{1}, 64<<10)
	var err error
	for i := 0; i < 10 && err == nil; i++ {
		err = s.Put(ctx, fmt.Sprintf("fill/%d", i), big)
	}
	if !errors.Is(err, backend.ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling 256 KiB with 640 KiB: %v; want ErrNoSpace", err)
	}
	if err := s.WriteAt(ctx, "fill/0", big, 1<<20); !errors.Is(err, backend.ErrNoSpace) {
		t.Errorf("WriteAt on a full file system = %v; want ErrNoSpace", err)
	}
	// A failed Put leaves no temporary file behind.
	var temps []string
	_ = filepath.WalkDir(mnt, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), "~tmp-") {
			temps = append(temps, path)
		}
		return nil
	})
	if len(temps) != 0 {
		t.Errorf("temporary files left: %q", temps)
	}
	// Space comes back after deletes.
	for i := range 10 {
		if err := s.Delete(ctx, fmt.Sprintf("fill/%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(ctx, "after", big); err != nil {
		t.Errorf("Put after freeing space: %v", err)
	}
}

// TestCloseWaits checks that Close waits for calls in progress and that
// those calls' later calls fail with ErrClosed.
func TestCloseWaits(t *testing.T) {
	ctx := t.Context()
	s := open(t, t.TempDir(), nil)
	for _, n := range []string{"a", "b"} {
		if err := s.Put(ctx, n, nil); err != nil {
			t.Fatal(err)
		}
	}
	// A read caches a's handle: a read while Close waits finds it
	// listed still, and must fail all the same.
	if _, err := s.ReadAt(ctx, "a", nil, 0); err != nil {
		t.Fatal(err)
	}
	inList, release, closed := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	var afterClose, readAfterClose error
	listErr := make(chan error, 1)
	go func() {
		first := true
		listErr <- s.List(ctx, "", func(backend.ObjectInfo) error {
			if first {
				first = false
				close(inList)
				<-release
				_, afterClose = s.Stat(ctx, "a")
				_, readAfterClose = s.ReadAt(ctx, "a", nil, 0)
			}
			return nil
		})
	}()
	<-inList
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned during a List: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	if err := <-listErr; err != nil {
		t.Errorf("List: %v", err)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
	if !errors.Is(afterClose, backend.ErrClosed) {
		t.Errorf("Stat while closing = %v; want ErrClosed", afterClose)
	}
	if !errors.Is(readAfterClose, backend.ErrClosed) {
		t.Errorf("ReadAt of a cached object while closing = %v; want ErrClosed", readAfterClose)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := dir.Open(ctx, t.TempDir(), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Open with canceled context = %v", err)
	}
	if _, err := dir.Open(t.Context(), t.TempDir(), &dir.Options{FilePerm: fs.ModeDir}); err == nil {
		t.Error("Open with a bad FilePerm succeeded")
	}
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := dir.Open(t.Context(), f, nil); err == nil {
		t.Error("Open of a regular file succeeded")
	}
	// Creating a nested root works.
	s := open(t, filepath.Join(t.TempDir(), "x", "y", "z"), &dir.Options{NoSync: true})
	if err := s.Put(t.Context(), "o", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCrashCloneOfDir takes a fault crash clone of a directory store, which
// copies it through List and ReadAt.
func TestCrashCloneOfDir(t *testing.T) {
	ctx := t.Context()
	fs := fault.New(open(t, t.TempDir(), nil))
	defer fs.Close()
	if err := fs.Put(ctx, "a/b", []byte("put")); err != nil {
		t.Fatal(err)
	}
	if err := fs.(backend.Overwriter).WriteAt(ctx, "a", []byte("w"), 2); err != nil {
		t.Fatal(err)
	}
	c, err := fs.CrashClone(fault.CrashOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(backend.Overwriter); !ok {
		t.Error("crash clone of a directory store lost Overwriter")
	}
	for name, want := range map[string]string{"a/b": "put", "a": "\x00\x00w"} {
		p := make([]byte, len(want))
		if _, err := c.ReadAt(ctx, name, p, 0); err != nil || string(p) != want {
			t.Errorf("clone %s = %q, %v; want %q", name, p, err, want)
		}
	}
}
