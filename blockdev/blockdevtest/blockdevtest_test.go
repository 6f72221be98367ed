package blockdevtest_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/blockdevtest"
	"github.com/lunway/lunway/blockdev/mem"
)

// The suite must fail on broken Devices. Each mutant breaks one promise of
// the contract; the test runs the subtest that should notice in a child
// process (a failing subtest cannot be observed from inside one test
// binary) and checks that it fails.

// base wraps a mem.Device and forwards everything, so that mutants can
// override one method.
type base struct{ *mem.Device }

// unmapNoop forgets to unmap.
type unmapNoop struct{ base }

func (unmapNoop) Unmap(context.Context, int64, int64) error { return nil }

// miscompareOffset reports the byte after the first difference.
type miscompareOffset struct{ base }

func (m miscompareOffset) CompareAndWrite(ctx context.Context, c, d []byte, off int64, f blockdev.WriteFlags) error {
	err := m.Device.CompareAndWrite(ctx, c, d, off, f)
	if me, ok := err.(*blockdev.MiscompareError); ok {
		return &blockdev.MiscompareError{Offset: me.Offset + 1}
	}
	return err
}

// statusGap skips the first block of every answer.
type statusGap struct{ base }

func (s statusGap) AllocationStatus(ctx context.Context, off, n int64) ([]blockdev.Extent, error) {
	exts, err := s.Device.AllocationStatus(ctx, off, n)
	if err == nil && len(exts) > 0 && exts[0].Len > 512 {
		exts[0].Off += 512
		exts[0].Len -= 512
	}
	return exts, err
}

// closeLeaky does not close.
type closeLeaky struct{ base }

func (closeLeaky) Close() error { return nil }

// thinLiar claims to be thin without the capabilities.
type thinLiar struct{ d *mem.Device }

func (t thinLiar) ReadAt(ctx context.Context, p []byte, off int64) error {
	return t.d.ReadAt(ctx, p, off)
}
func (t thinLiar) WriteAt(ctx context.Context, p []byte, off int64, f blockdev.WriteFlags) error {
	return t.d.WriteAt(ctx, p, off, f)
}
func (t thinLiar) Flush(ctx context.Context) error { return t.d.Flush(ctx) }
func (t thinLiar) Info() blockdev.Info             { return t.d.Info() }
func (t thinLiar) Close() error                    { return t.d.Close() }

// ignoresContext writes even when the context is done.
type ignoresContext struct{ base }

func (i ignoresContext) WriteAt(_ context.Context, p []byte, off int64, f blockdev.WriteFlags) error {
	return i.Device.WriteAt(context.Background(), p, off, f)
}

// asyncTwice completes every asynchronous write twice.
type asyncTwice struct{ *blockdevtest.AsyncMem }

type twice struct{ c blockdev.Completion }

func (t twice) Done(err error) { t.c.Done(err); t.c.Done(err) }

func (a asyncTwice) StartWriteAt(ctx context.Context, p []byte, off int64, done blockdev.Completion) bool {
	return a.AsyncMem.StartWriteAt(ctx, p, off, twice{done})
}

// asyncLost completes asynchronous writes without writing.
type asyncLost struct{ *blockdevtest.AsyncMem }

func (a asyncLost) StartWriteAt(ctx context.Context, p []byte, off int64, done blockdev.Completion) bool {
	done.Done(nil)
	return true
}

var mutants = []struct {
	name, subtest string
	wrap          func(*mem.Device) blockdev.Device
	opts          blockdevtest.Options
}{
	// none is the control: memory "survives" a reopen that keeps the Device.
	{"none", "", func(d *mem.Device) blockdev.Device { return blockdevtest.NewAsyncMem(d, 64) },
		blockdevtest.Options{Reopen: func(t *testing.T, d blockdev.Device) blockdev.Device { return d }}},
	{"unmap-noop", "Unmap", func(d *mem.Device) blockdev.Device { return unmapNoop{base{d}} }, blockdevtest.Options{}},
	{"miscompare-offset", "CompareAndWrite", func(d *mem.Device) blockdev.Device { return miscompareOffset{base{d}} }, blockdevtest.Options{}},
	{"status-gap", "AllocationStatus", func(d *mem.Device) blockdev.Device { return statusGap{base{d}} }, blockdevtest.Options{}},
	{"close-leaky", "Close", func(d *mem.Device) blockdev.Device { return closeLeaky{base{d}} }, blockdevtest.Options{}},
	{"thin-liar", "Info", func(d *mem.Device) blockdev.Device { return thinLiar{d} }, blockdevtest.Options{}},
	{"ignores-context", "Context", func(d *mem.Device) blockdev.Device { return ignoresContext{base{d}} }, blockdevtest.Options{}},
	{"async-twice", "AsyncIO", func(d *mem.Device) blockdev.Device { return asyncTwice{blockdevtest.NewAsyncMem(d, 64)} },
		blockdevtest.Options{}},
	{"async-lost", "AsyncIO", func(d *mem.Device) blockdev.Device { return asyncLost{blockdevtest.NewAsyncMem(d, 64)} },
		blockdevtest.Options{}},
	{"wrong-caps", "Info", func(d *mem.Device) blockdev.Device { return d },
		blockdevtest.Options{ExactCaps: true, Caps: blockdevtest.CapUnmap}},
	{"forgets-on-reopen", "Durability", func(d *mem.Device) blockdev.Device { return d },
		blockdevtest.Options{Reopen: func(t *testing.T, d blockdev.Device) blockdev.Device {
			d.Close()
			n, err := mem.New(d.Info().SizeBytes, nil)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}}},
}

const mutantEnv = "LUNWAY_BLOCKDEVTEST_MUTANT"

func TestSuiteCatchesMutants(t *testing.T) {
	if name := os.Getenv(mutantEnv); name != "" {
		for _, m := range mutants {
			if m.name == name {
				opts := m.opts
				blockdevtest.Run(t, func(t *testing.T, sizeBytes int64) blockdev.Device {
					d, err := mem.New(sizeBytes, nil)
					if err != nil {
						t.Fatal(err)
					}
					return m.wrap(d)
				}, &opts)
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
			// The harness itself: the unbroken device passes the subtest.
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

// TestAsyncMem: the test helper with asynchronous I/O is itself a
// conforming Device, with 8 request slots so that the AsyncIO subtest
// sees both taken and refused starts.
func TestAsyncMem(t *testing.T) {
	newDev := func(t *testing.T, sizeBytes int64, ro bool) blockdev.Device {
		d, err := mem.New(sizeBytes, &mem.Options{ReadOnly: ro})
		if err != nil {
			t.Fatal(err)
		}
		a := blockdevtest.NewAsyncMem(d, 8)
		a.SetDelay(100 * time.Microsecond)
		return a
	}
	blockdevtest.Run(t, func(t *testing.T, sizeBytes int64) blockdev.Device {
		return newDev(t, sizeBytes, false)
	}, &blockdevtest.Options{
		OpenReadOnly: func(t *testing.T, sizeBytes int64) blockdev.Device { return newDev(t, sizeBytes, true) },
		ExactCaps:    true,
		Caps: blockdevtest.CapUnmap | blockdevtest.CapWriteZeroes | blockdevtest.CapAllocationStatus |
			blockdevtest.CapResize | blockdevtest.CapCompareAndWrite | blockdevtest.CapAsyncIO,
	})
}
