package backendtest_test

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/backendtest"
	"github.com/lunway/lunway/backend/mem"
)

// The suite must fail on broken stores. Each mutant breaks one promise of
// the contract; the test runs the subtest that should notice in a child
// process and checks that it fails (and that the unbroken store passes).

type base struct{ mem.Store }

// listUnsorted lists in reverse order.
type listUnsorted struct{ base }

func (l listUnsorted) List(ctx context.Context, prefix string, fn func(backend.ObjectInfo) error) error {
	var all []backend.ObjectInfo
	if err := l.Store.List(ctx, prefix, func(i backend.ObjectInfo) error { all = append(all, i); return nil }); err != nil {
		return err
	}
	slices.Reverse(all)
	for _, i := range all {
		if err := fn(i); err != nil {
			return err
		}
	}
	return nil
}

// eofOnFullRead reports io.EOF when a read reaches the end exactly.
type eofOnFullRead struct{ base }

func (e eofOnFullRead) ReadAt(ctx context.Context, name string, p []byte, off int64) (int, error) {
	n, err := e.Store.ReadAt(ctx, name, p, off)
	if err == nil && n > 0 {
		if info, serr := e.Store.Stat(ctx, name); serr == nil && off+int64(n) == info.Size {
			return n, io.EOF
		}
	}
	return n, err
}

// shortReadNoError drops io.EOF from short reads.
type shortReadNoError struct{ base }

func (s shortReadNoError) ReadAt(ctx context.Context, name string, p []byte, off int64) (int, error) {
	n, err := s.Store.ReadAt(ctx, name, p, off)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// deleteMissingFails reports deleting a missing object as an error.
type deleteMissingFails struct{ base }

func (d deleteMissingFails) Delete(ctx context.Context, name string) error {
	if _, err := d.Store.Stat(ctx, name); errors.Is(err, backend.ErrNotFound) {
		return err
	}
	return d.Store.Delete(ctx, name)
}

// closeTwiceNil accepts a second Close.
type closeTwiceNil struct{ base }

func (c closeTwiceNil) Close() error {
	if err := c.Store.Close(); !errors.Is(err, backend.ErrClosed) {
		return err
	}
	return nil
}

// putIgnoresContext stores even when the context is done.
type putIgnoresContext struct{ base }

func (p putIgnoresContext) Put(_ context.Context, name string, data []byte) error {
	return p.Store.Put(context.Background(), name, data)
}

// caseFolding maps names to lower case, so "A" and "a" collide.
type caseFolding struct{ base }

func (c caseFolding) Put(ctx context.Context, name string, data []byte) error {
	return c.Store.Put(ctx, strings.ToLower(name), data)
}

var mutants = []struct {
	name, subtest string
	wrap          func(mem.Store) backend.Store
}{
	{"none", "", func(s mem.Store) backend.Store { return s }},
	{"list-unsorted", "List", func(s mem.Store) backend.Store { return listUnsorted{base{s}} }},
	{"eof-on-full-read", "ReadAtEdges", func(s mem.Store) backend.Store { return eofOnFullRead{base{s}} }},
	{"short-read-no-error", "ReadAtEdges", func(s mem.Store) backend.Store { return shortReadNoError{base{s}} }},
	{"delete-missing-fails", "Missing", func(s mem.Store) backend.Store { return deleteMissingFails{base{s}} }},
	{"close-twice-nil", "Close", func(s mem.Store) backend.Store { return closeTwiceNil{base{s}} }},
	{"put-ignores-context", "Context", func(s mem.Store) backend.Store { return putIgnoresContext{base{s}} }},
	{"case-folding", "Names", func(s mem.Store) backend.Store { return caseFolding{base{s}} }},
}

const mutantEnv = "LUNWAY_BACKENDTEST_MUTANT"

func TestSuiteCatchesMutants(t *testing.T) {
	if name := os.Getenv(mutantEnv); name != "" {
		for _, m := range mutants {
			if m.name == name {
				backendtest.Run(t, func(t *testing.T) backend.Store { return m.wrap(mem.New(nil)) })
				return
			}
		}
		t.Fatalf("unknown mutant %q", name)
	}
	child := func(mutant, subtest string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSuiteCatchesMutants$/^"+subtest+"$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), mutantEnv+"="+mutant)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, m := range mutants[1:] {
		t.Run(m.name, func(t *testing.T) {
			out, err := child("none", m.subtest)
			if err != nil || !strings.Contains(out, "--- PASS: TestSuiteCatchesMutants/"+m.subtest+" ") {
				t.Fatalf("control run of %s failed (exit: %v):\n%s", m.subtest, err, out)
			}
			out, err = child(m.name, m.subtest)
			if err == nil || !strings.Contains(out, "--- FAIL: TestSuiteCatchesMutants/"+m.subtest+" ") {
				t.Errorf("mutant %s survived subtest %s (exit: %v):\n%s", m.name, m.subtest, err, out)
			}
		})
	}
}
