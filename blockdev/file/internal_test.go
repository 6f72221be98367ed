package file

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/blockdevtest"
)

// TestFallbacks runs the conformance suite with the kernel features that
// have fallbacks switched off, as on a file system without hole punching
// or a kernel without RWF_DSYNC: the Device must write zeros and sync
// instead, and stop claiming to be thin.
func TestFallbacks(t *testing.T) {
	blockdevtest.Run(t, func(t *testing.T, sizeBytes int64) blockdev.Device {
		d, err := Open(t.Context(), filepath.Join(t.TempDir(), "f.img"), &Options{Create: true, SizeBytes: sizeBytes})
		if err != nil {
			t.Fatal(err)
		}
		d.noPunch.Store(true)
		d.noZeroRange.Store(true)
		d.noRWFDSync.Store(true)
		if d.Info().Thin {
			t.Fatal("Device without hole punching claims to be thin")
		}
		return d
	}, &blockdevtest.Options{SizeBytes: 1 << 20})
}

func TestMapErrno(t *testing.T) {
	cases := []struct {
		err  error
		want error
	}{
		{unix.ENOSPC, blockdev.ErrNoSpace},
		{unix.EDQUOT, blockdev.ErrNoSpace},
		{unix.EFBIG, blockdev.ErrNoSpace},
		{unix.EROFS, blockdev.ErrReadOnly},
		{unix.EBUSY, blockdev.ErrInUse},
		{unix.EIO, unix.EIO},
	}
	for _, c := range cases {
		got := mapErrno(fmt.Errorf("op: %w", c.err))
		if !errors.Is(got, c.want) || !errors.Is(got, c.err) {
			t.Errorf("mapErrno(%v) = %v; want %v wrapping the errno", c.err, got, c.want)
		}
	}
}

// TestCompareAndWriteExcludesWrites checks the gate: a plain write must
// never land between a CompareAndWrite's compare and its write. The writer
// writes increasing sequence numbers and reads each back; the CAW goroutine
// writes back what it compared, tagged. If the writer ever reads a tagged
// value older than its own last write, that write landed inside a CAW and
// was lost.
func TestCompareAndWriteExcludesWrites(t *testing.T) {
	ctx := t.Context()
	d, err := Open(ctx, filepath.Join(t.TempDir(), "g.img"), &Options{Create: true, SizeBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	const bs = 512
	block := func(seq uint64, tagged bool) []byte {
		b := make([]byte, bs)
		binary.LittleEndian.PutUint64(b, seq)
		if tagged {
			b[8] = 1
		}
		return b
	}
	var wg sync.WaitGroup
	var stop atomic.Bool
	errc := make(chan error, 2)
	wg.Add(2)
	go func() { // writer
		defer wg.Done()
		defer stop.Store(true)
		got := make([]byte, bs)
		for seq := uint64(1); seq <= 2000; seq++ {
			if err := d.WriteAt(ctx, block(seq, false), 0, 0); err != nil {
				errc <- err
				return
			}
			if err := d.ReadAt(ctx, got, 0); err != nil {
				errc <- err
				return
			}
			if v := binary.LittleEndian.Uint64(got); v < seq {
				errc <- fmt.Errorf("write %d was lost under a CAW of %d", seq, v)
				return
			}
		}
	}()
	go func() { // compare-and-writer
		defer wg.Done()
		cur := make([]byte, bs)
		for n := 0; !stop.Load(); {
			if err := d.ReadAt(ctx, cur, 0); err != nil {
				errc <- err
				return
			}
			seq := binary.LittleEndian.Uint64(cur)
			err := d.CompareAndWrite(ctx, cur, block(seq, true), 0, 0)
			var me *blockdev.MiscompareError
			switch {
			case err == nil:
				n++
			case errors.As(err, &me):
			default:
				errc <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
}

// TestResizeExcludesWrites shrinks and regrows while writes run near the
// end: no write may land past a shrink and reappear after the regrow.
func TestResizeExcludesWrites(t *testing.T) {
	ctx := t.Context()
	d, err := Open(ctx, filepath.Join(t.TempDir(), "r.img"), &Options{Create: true, SizeBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var wg sync.WaitGroup
	var stop atomic.Bool
	wg.Add(1)
	go func() {
		defer wg.Done()
		data := bytes.Repeat([]byte{9}, 4096)
		for !stop.Load() {
			err := d.WriteAt(ctx, data, 1<<20-4096, 0)
			if err != nil && !errors.Is(err, blockdev.ErrOutOfRange) {
				t.Error(err)
				return
			}
		}
	}()
	for range 200 {
		if err := d.Resize(ctx, 512<<10); err != nil {
			t.Fatal(err)
		}
		// Nothing past the end: the file is exactly the new size.
		if fi, err := d.f.Stat(); err != nil || fi.Size() != 512<<10 {
			t.Fatalf("file size %d after shrink, %v", fi.Size(), err)
		}
		if err := d.Resize(ctx, 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
}
