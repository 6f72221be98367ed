package file

import (
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// geometry is what a block device reports about itself.
type geometry struct {
	size, lbs, pbs       int64
	discard, writeZeroes bool // the queue supports DISCARD / WRITE ZEROES
}

func blockGeometry(f *os.File) (geometry, error) {
	var g geometry
	var rdev uint64
	rc, err := f.SyscallConn()
	if err != nil {
		return g, err
	}
	var ierr error
	err = rc.Control(func(fd uintptr) {
		var size uint64
		var lbs int
		var pbs uint32
		var st unix.Stat_t
		if size, ierr = unix.IoctlGetUint64(int(fd), unix.BLKGETSIZE64); ierr != nil {
			return
		}
		if lbs, ierr = unix.IoctlGetInt(int(fd), unix.BLKSSZGET); ierr != nil {
			return
		}
		if pbs, ierr = unix.IoctlGetUint32(int(fd), unix.BLKPBSZGET); ierr != nil {
			return
		}
		if ierr = unix.Fstat(int(fd), &st); ierr != nil {
			return
		}
		g.size, g.lbs, g.pbs, rdev = int64(size), int64(lbs), int64(pbs), st.Rdev
	})
	if err == nil {
		err = ierr
	}
	if err != nil {
		return g, err
	}
	if g.lbs < 512 || g.lbs&(g.lbs-1) != 0 {
		g.lbs = 512
	}
	if g.pbs < g.lbs || g.pbs&(g.pbs-1) != 0 {
		g.pbs = g.lbs
	}
	g.discard = queueLimit(rdev, "discard_max_bytes") > 0
	g.writeZeroes = queueLimit(rdev, "write_zeroes_max_bytes") > 0
	return g, nil
}

// queueLimit reads a queue attribute of a block device from sysfs: the
// device's own queue, or its disk's for a partition. Missing means 0.
func queueLimit(rdev uint64, attr string) uint64 {
	dev := "/sys/dev/block/" + strconv.FormatUint(uint64(unix.Major(rdev)), 10) + ":" +
		strconv.FormatUint(uint64(unix.Minor(rdev)), 10)
	for _, p := range []string{dev + "/queue/" + attr, dev + "/../queue/" + attr} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err == nil {
			return v
		}
	}
	return 0
}

// blkZeroOut zeroes [off, off+n) of a block device with BLKZEROOUT: the
// kernel uses WRITE ZEROES or WRITE SAME when the device has them and
// writes zeros otherwise.
func (d *Device) blkZeroOut(off, n int64) error {
	r := [2]uint64{uint64(off), uint64(n)}
	return d.control(func(fd int) error {
		for {
			_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKZEROOUT, uintptr(unsafe.Pointer(&r[0])))
			switch e {
			case 0:
				return nil
			case unix.EINTR:
				continue
			}
			return e
		}
	})
}
