package scsi

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/mem"
)

// failDev fails reads and writes with err (when set).
type failDev struct {
	*mem.Device
	mu  sync.Mutex
	err error
}

func (d *failDev) fail() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

func (d *failDev) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := d.fail(); err != nil {
		return err
	}
	return d.Device.ReadAt(ctx, p, off)
}

func (d *failDev) WriteAt(ctx context.Context, p []byte, off int64, f blockdev.WriteFlags) error {
	if err := d.fail(); err != nil {
		return err
	}
	return d.Device.WriteAt(ctx, p, off, f)
}

// TestErrorMapping drives every storage error through READ and WRITE and
// checks the status and sense errorSense gives it.
func TestErrorMapping(t *testing.T) {
	dev := &failDev{Device: newMem(t, testBlocks, nil)}
	f := newFixture(t, dev, nil, nil)
	n := nexus("iqn.2026-01.io.lunway:a", 1, 1)
	f.ready(n)
	for _, c := range []struct {
		err            error
		st             Status
		key, asc, ascq uint8
	}{
		{blockdev.ErrUnavailable, StatusBusy, 0, 0, 0},
		{fmt.Errorf("rados: %w", blockdev.ErrUnavailable), StatusBusy, 0, 0, 0},
		{context.DeadlineExceeded, StatusBusy, 0, 0, 0},
		{blockdev.ErrOutOfRange, StatusCheckCondition, 5, 0x21, 0},
		{blockdev.ErrReadOnly, StatusCheckCondition, 7, 0x27, 0},
		{blockdev.ErrCorrupt, StatusCheckCondition, 3, 0x11, 0},
		{fmt.Errorf("extent 7: %w", blockdev.ErrCorrupt), StatusCheckCondition, 3, 0x11, 0},
		{blockdev.ErrNoSpace, StatusCheckCondition, 7, 0x27, 0x07},
		{blockdev.ErrClosed, StatusCheckCondition, 2, 0x04, 0},
		{blockdev.ErrUnaligned, StatusCheckCondition, 4, 0x44, 0},
		{errors.New("something else"), StatusCheckCondition, 4, 0x44, 0},
	} {
		dev.mu.Lock()
		dev.err = c.err
		dev.mu.Unlock()
		for _, cdb := range [][]byte{read10, write10} {
			var out []byte
			if cdb[0] == 0x2a {
				out = make([]byte, 512)
			}
			res := f.run(n, 0, cdb, out)
			if res.Status != c.st {
				t.Errorf("%v (op %#x): status %#x, want %#x", c.err, cdb[0], res.Status, c.st)
				continue
			}
			if c.st == StatusCheckCondition {
				s, _ := ParseSense(res.Sense)
				if s.Key != c.key || s.ASC != c.asc || s.ASCQ != c.ascq {
					t.Errorf("%v: sense %x/%02x/%02x, want %x/%02x/%02x", c.err, s.Key, s.ASC, s.ASCQ, c.key, c.asc, c.ascq)
				}
				if s.Key == 5 && s.ASC == 0x25 {
					t.Errorf("%v: LOGICAL UNIT NOT SUPPORTED for an existing LU", c.err)
				}
			}
		}
	}
	st := f.lu.Stats()
	if st.Busy != 6 || st.ErrorsBySenseKey[3] != 4 || st.ErrorsBySenseKey[4] != 4 {
		t.Fatalf("stats busy %d, medium %d, hardware %d", st.Busy, st.ErrorsBySenseKey[3], st.ErrorsBySenseKey[4])
	}
	// MiscompareError carries its offset.
	stt, s := errorSense(fmt.Errorf("caw: %w", &blockdev.MiscompareError{Offset: 4097}))
	if stt != StatusCheckCondition || s.key != senseMiscompare || s.asc != ascMiscompareDuringVerify || !s.infoValid || s.info != 4097 {
		t.Fatalf("miscompare → %#x %+v", stt, s)
	}
}

// recDev records write flags and which optional capability served a
// request; copyErr is what CopyRange returns.
type recDev struct {
	*mem.Device
	mu      sync.Mutex
	flags   []blockdev.WriteFlags
	zeroes  []bool // unmap argument of each WriteZeroes
	copies  int
	copyErr error
}

func (d *recDev) WriteAt(ctx context.Context, p []byte, off int64, f blockdev.WriteFlags) error {
	d.mu.Lock()
	d.flags = append(d.flags, f)
	d.mu.Unlock()
	return d.Device.WriteAt(ctx, p, off, f)
}

func (d *recDev) WriteZeroes(ctx context.Context, off, length int64, unmap bool, f blockdev.WriteFlags) error {
	d.mu.Lock()
	d.zeroes = append(d.zeroes, unmap)
	d.mu.Unlock()
	return d.Device.WriteZeroes(ctx, off, length, unmap, f)
}

func (d *recDev) CopyRange(ctx context.Context, src blockdev.Device, srcOff, dstOff, length int64) error {
	d.mu.Lock()
	d.copies++
	err := d.copyErr
	d.mu.Unlock()
	if err != nil {
		return err
	}
	buf := make([]byte, length)
	if err := src.ReadAt(ctx, buf, srcOff); err != nil {
		return err
	}
	return d.Device.WriteAt(ctx, buf, dstOff, 0)
}

func (d *recDev) take() ([]blockdev.WriteFlags, []bool, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f, z, c := d.flags, d.zeroes, d.copies
	d.flags, d.zeroes, d.copies = nil, nil, 0
	return f, z, c
}

func TestWritePaths(t *testing.T) {
	dev := &recDev{Device: newMem(t, testBlocks, nil)}
	f := newFixture(t, dev, nil, nil)
	n := nexus("iqn.2026-01.io.lunway:a", 1, 1)
	f.ready(n)
	blk := make([]byte, 512)
	check := func(name string, wantFlags []blockdev.WriteFlags, wantZero []bool, wantCopies int) {
		t.Helper()
		fl, z, c := dev.take()
		if fmt.Sprint(fl) != fmt.Sprint(wantFlags) || fmt.Sprint(z) != fmt.Sprint(wantZero) || c != wantCopies {
			t.Errorf("%s: flags %v zeroes %v copies %d; want %v %v %d", name, fl, z, c, wantFlags, wantZero, wantCopies)
		}
	}
	good(t, f.run(n, 0, mustHex(t, "2a 00 00000000 00 0001 00"), blk))
	check("WRITE", []blockdev.WriteFlags{0}, nil, 0)
	good(t, f.run(n, 0, mustHex(t, "2a 08 00000000 00 0001 00"), blk))
	check("WRITE FUA", []blockdev.WriteFlags{blockdev.FUA}, nil, 0)
	good(t, f.run(n, 0, mustHex(t, "2e 00 00000000 00 0001 00"), blk))
	check("WRITE AND VERIFY", []blockdev.WriteFlags{blockdev.FUA}, nil, 0)
	good(t, f.run(n, 0, mustHex(t, "41 00 00000000 00 0010 00"), blk))
	check("WRITE SAME zero", nil, []bool{false}, 0)
	good(t, f.run(n, 0, mustHex(t, "41 08 00000000 00 0010 00"), blk))
	check("WRITE SAME UNMAP", nil, []bool{true}, 0)
	good(t, f.run(n, 0, mustHex(t, "41 08 00000000 00 0001 00"), pattern(512, 1)))
	check("WRITE SAME UNMAP non-zero", []blockdev.WriteFlags{0}, nil, 0)
	// WCE=0: every write is FUA.
	good(t, f.run(n, 0, mustHex(t, "15 10 0000 18 00"), mustHex(t, "00000000 0812 00"+"0000000000000000000000000000000000")))
	good(t, f.run(n, 0, mustHex(t, "2a 00 00000000 00 0001 00"), blk))
	check("WRITE with WCE=0", []blockdev.WriteFlags{blockdev.FUA}, nil, 0)

	// EXTENDED COPY uses CopyRange, and falls back on ErrNotSupported.
	naa := f.lu.NAA()
	p := xcopyParams([][16]byte{naa}, [][5]uint64{{0, 0, 8, 0, 100}})
	good(t, f.run(n, 0, xcopyCDB(len(p)), p))
	check("XCOPY CopyRange", nil, nil, 1)
	dev.mu.Lock()
	dev.copyErr = fmt.Errorf("other device: %w", blockdev.ErrNotSupported)
	dev.mu.Unlock()
	good(t, f.run(n, 0, xcopyCDB(len(p)), p))
	check("XCOPY fallback (WCE=0)", []blockdev.WriteFlags{blockdev.FUA}, nil, 1)
	dev.mu.Lock()
	dev.copyErr = blockdev.ErrUnavailable
	dev.mu.Unlock()
	expect(t, f.run(n, 0, xcopyCDB(len(p)), p), StatusBusy, 0, 0, 0)
	dev.take()
}
