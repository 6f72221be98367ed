package file_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/blockdevtest"
	"github.com/lunway/lunway/blockdev/file"
	"github.com/lunway/lunway/internal/testenv"
)

// loopDevice attaches a loop device to a new sparse backing file of
// sizeBytes and returns its path; it is detached when the test ends. The
// loop device has logical blocks of lbs bytes.
func loopDevice(t *testing.T, sizeBytes int64, lbs uint32) string {
	p, _ := loopDeviceBacking(t, sizeBytes, lbs)
	return p
}

// loopDeviceBacking is loopDevice that also returns the backing file.
func loopDeviceBacking(t *testing.T, sizeBytes int64, lbs uint32) (string, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "loop devices need root")
	}
	backing := filepath.Join(t.TempDir(), "backing.img")
	bf, err := os.OpenFile(backing, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer bf.Close()
	if err := bf.Truncate(sizeBytes); err != nil {
		t.Fatal(err)
	}
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		testenv.Unavailable(t, "no loop device support: "+err.Error())
	}
	defer ctl.Close()
	// Another process may take the free device between asking and
	// configuring it: try a few times.
	for attempt := 0; ; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			testenv.Unavailable(t, "LOOP_CTL_GET_FREE: "+err.Error())
		}
		path := fmt.Sprintf("/dev/loop%d", n)
		lf, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			testenv.Unavailable(t, "open "+path+": "+err.Error())
		}
		cfg := unix.LoopConfig{Fd: uint32(bf.Fd()), Size: lbs} // Size is struct loop_config.block_size
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
		err = unix.IoctlLoopConfigure(int(lf.Fd()), &cfg)
		if errors.Is(err, unix.EBUSY) && attempt < 10 {
			lf.Close()
			continue
		}
		if err != nil {
			lf.Close()
			testenv.Unavailable(t, "LOOP_CONFIGURE "+path+": "+err.Error())
		}
		t.Cleanup(func() {
			// Autoclear detaches once the last descriptor closes; clear
			// explicitly too in case the test leaked one.
			_ = unix.IoctlSetInt(int(lf.Fd()), unix.LOOP_CLR_FD, 0)
			lf.Close()
		})
		return path, backing
	}
}

func TestBlockDeviceConformance(t *testing.T) {
	for _, lbs := range []uint32{512, 4096} {
		t.Run(fmt.Sprint(lbs), func(t *testing.T) {
			blockdevtest.Run(t, func(t *testing.T, sizeBytes int64) blockdev.Device {
				d := openFile(t, loopDevice(t, sizeBytes, lbs), nil)
				if !d.IsBlockDevice() {
					t.Fatal("loop device not recognised as a block device")
				}
				return d
			}, &blockdevtest.Options{
				SizeBytes: 2 << 20,
				ExactCaps: true,
				Caps:      allCaps,
				Reopen: func(t *testing.T, d blockdev.Device) blockdev.Device {
					if err := d.Close(); err != nil {
						t.Fatal(err)
					}
					return openFile(t, d.(*file.Device).Path(), nil)
				},
				OpenReadOnly: func(t *testing.T, sizeBytes int64) blockdev.Device {
					return openFile(t, loopDevice(t, sizeBytes, lbs), &file.Options{ReadOnly: true})
				},
			})
		})
	}
}

func TestBlockDevice(t *testing.T) {
	ctx := t.Context()
	path, backing := loopDeviceBacking(t, 8<<20, 512)
	d := openFile(t, path, nil)
	defer d.Close()
	info := d.Info()
	if info.SizeBytes != 8<<20 || info.LogicalBlockSize != 512 {
		t.Fatalf("Info = %+v", info)
	}
	// A loop device over a file on ext4 supports discard and write zeroes.
	if !info.Thin {
		t.Errorf("loop device over a sparse file is not thin: %+v", info)
	}
	if err := d.Resize(ctx, 16<<20); !errors.Is(err, blockdev.ErrNotSupported) {
		t.Errorf("Resize of a block device = %v; want ErrNotSupported", err)
	}
	// Grow the device underneath (as an administrator grows a logical
	// volume); Resize to the new capacity then succeeds.
	if err := os.Truncate(backing, 16<<20); err != nil {
		t.Fatal(err)
	}
	lf, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	err = unix.IoctlSetInt(int(lf.Fd()), unix.LOOP_SET_CAPACITY, 0)
	lf.Close()
	if err != nil {
		t.Fatalf("LOOP_SET_CAPACITY: %v", err)
	}
	if err := d.Resize(ctx, 16<<20); err != nil {
		t.Fatalf("Resize to the grown capacity: %v", err)
	}
	if got := d.Info().SizeBytes; got != 16<<20 {
		t.Fatalf("SizeBytes after resize = %d", got)
	}
	if err := d.WriteAt(ctx, make([]byte, 512), 16<<20-512, 0); err != nil {
		t.Fatalf("write at the new end: %v", err)
	}
	data := bytes.Repeat([]byte{0x5c}, 1<<20)
	if err := d.WriteAt(ctx, data, 1<<20, blockdev.FUA); err != nil {
		t.Fatal(err)
	}
	for _, unmap := range []bool{true, false} {
		if err := d.WriteZeroes(ctx, 1<<20, 512<<10, unmap, 0); err != nil {
			t.Fatalf("WriteZeroes(unmap=%v): %v", unmap, err)
		}
	}
	got := make([]byte, 1<<20)
	if err := d.ReadAt(ctx, got, 1<<20); err != nil {
		t.Fatal(err)
	}
	want := append(make([]byte, 512<<10), data[512<<10:]...)
	if !bytes.Equal(got, want) {
		t.Fatal("zeroed range of a block device reads wrong")
	}
	// A logical block size below the device's is refused; above is fine.
	if _, err := file.Open(ctx, loopDevice(t, 1<<20, 4096), &file.Options{LogicalBlockSize: 512}); err == nil {
		t.Error("512-byte blocks on a 4096-byte device accepted")
	}
	d4 := openFile(t, loopDevice(t, 1<<20, 512), &file.Options{LogicalBlockSize: 4096})
	if d4.Info().LogicalBlockSize != 4096 {
		t.Errorf("LogicalBlockSize = %d, want 4096", d4.Info().LogicalBlockSize)
	}
	d4.Close()
	// The block device is locked like a file.
	if _, err := file.Open(ctx, path, nil); !errors.Is(err, blockdev.ErrInUse) {
		t.Errorf("second Open of a block device = %v; want ErrInUse", err)
	}
	// A block device held exclusively elsewhere (mounted, say) is refused
	// for writing, and still opens read-only.
	other := loopDevice(t, 1<<20, 512)
	held, err := os.OpenFile(other, os.O_RDONLY|os.O_EXCL, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := file.Open(ctx, other, nil); !errors.Is(err, blockdev.ErrInUse) {
		t.Errorf("Open of an exclusively held block device = %v; want ErrInUse", err)
	}
	ro := openFile(t, other, &file.Options{ReadOnly: true})
	ro.Close()
}
