package paths

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// GuestExport is one image (or the raw second disk) the guest serves with
// qemu-nbd.
type GuestExport struct {
	// File is relative to the datastore mount (vm.vmdk), or /dev/vdb.
	File   string
	Format string // vmdk, qcow2, raw
	// Size is the virtual disk's size (created on the host before the
	// datastore is written to the LUN); ignored for /dev paths.
	Size int64
}

// GuestOptions configure StartGuest.
type GuestOptions struct {
	// Dir holds vmlinuz and initrd.img (bench/paths/guest/build.sh).
	Dir string
	// WorkDir receives the console log.
	WorkDir string
	// Disks are iscsi:// URLs attached as virtio disks vda, vdb, ...
	// through QEMU's libiscsi.
	Disks []string
	// Mount is the device holding the datastore filesystem (/dev/vda).
	Mount   string
	Exports []GuestExport
	// MemoryMiB of the guest [512].
	MemoryMiB int
	// BootTimeout [3m] for one boot attempt; a guest that is not ready by
	// then is stopped and booted once more (TCG on a loaded machine has
	// been seen to stall early in boot).
	BootTimeout time.Duration
}

// Guest is a QEMU virtual machine under software emulation (TCG) that
// plays the hypervisor host of a classic datastore: Linux's ext4 on a
// virtio disk stands for VMFS on the host's LUN, and qemu-nbd inside it
// for the hypervisor's VMDK or qcow2 driver. Its NBD exports reach the
// host through user-mode networking forwarded to 127.0.0.1 only.
type Guest struct {
	p     *proc
	ports []int // host ports of the exports, in order
}

// GuestArtifacts returns the kernel and initramfs in dir, or an error
// saying how to build them.
func GuestArtifacts(dir string) (kernel, initrd string, err error) {
	kernel, initrd = filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.img")
	for _, f := range []string{kernel, initrd} {
		if _, err := os.Stat(f); err != nil {
			return "", "", fmt.Errorf("%w: guest image %s: build it with bench/paths/guest/build.sh %s", ErrMissingTool, f, dir)
		}
	}
	return kernel, initrd, nil
}

// guestCmdline is the kernel command line of the guest's init.
func guestCmdline(mount string, exports []GuestExport) string {
	var ex []string
	for i, e := range exports {
		ex = append(ex, fmt.Sprintf("%s:%s:%d", e.File, e.Format, guestPort(i)))
	}
	return "console=ttyS0 no_timer_check panic=-1 lunway.mount=" + mount + " lunway.exports=" + strings.Join(ex, ",")
}

// guestPort is the guest-side NBD port of export i.
func guestPort(i int) int { return 10809 + i }

// StartGuest boots the guest and waits until every export listens.
func StartGuest(ctx context.Context, o GuestOptions) (*Guest, error) {
	bin, err := NeedTool("qemu-system-x86_64", "qemu-system-x86")
	if err != nil {
		return nil, err
	}
	kernel, initrd, err := GuestArtifacts(o.Dir)
	if err != nil {
		return nil, err
	}
	if o.MemoryMiB == 0 {
		o.MemoryMiB = 512
	}
	if o.BootTimeout == 0 {
		o.BootTimeout = 3 * time.Minute
	}
	g := &Guest{}
	netdev := "user,id=n0,restrict=on"
	for i := range o.Exports {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		g.ports = append(g.ports, port)
		netdev += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", port, guestPort(i))
	}
	args := []string{bin, "-machine", "pc,accel=tcg", "-m", strconv.Itoa(o.MemoryMiB), "-smp", "1",
		"-nographic", "-no-reboot", "-kernel", kernel, "-initrd", initrd,
		"-append", guestCmdline(o.Mount, o.Exports),
		"-iscsi", "initiator-name=iqn.2026-11.dev.lunway:bench-guest",
		"-netdev", netdev, "-device", "virtio-net-pci,netdev=n0"}
	for _, d := range o.Disks {
		args = append(args, "-drive", "file="+d+",format=raw,if=virtio,cache=none")
	}
	for attempt := 1; ; attempt++ {
		console := filepath.Join(o.WorkDir, fmt.Sprintf("guest-console-%d.log", attempt))
		os.Remove(console)
		g.p, err = startProc("guest", console, args...)
		if err != nil {
			return nil, err
		}
		var line string
		line, err = waitLine(ctx, g.p, console, o.BootTimeout, "LUNWAY-GUEST-READY", "LUNWAY-GUEST-FAIL")
		if err == nil && strings.HasPrefix(line, "LUNWAY-GUEST-FAIL") {
			err = fmt.Errorf("paths: guest: %s", line)
		}
		if err == nil {
			return g, nil
		}
		g.Close()
		if attempt == 2 || ctx.Err() != nil || strings.HasPrefix(line, "LUNWAY-GUEST-FAIL") {
			return nil, fmt.Errorf("%w (console: %s)", err, console)
		}
	}
}

// Dial opens export i through the forwarded port.
func (g *Guest) Dial(ctx context.Context, i int) (*NBD, error) {
	return DialNBD(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", g.ports[i]), "")
}

// Close powers the guest off (its datastore is thrown away with the LUN).
func (g *Guest) Close() error {
	g.p.stop(5 * time.Second)
	return nil
}

// WriteDatastore builds the guest's datastore on the host and writes it to
// dev (the LUN): an ext4 filesystem (created without lazy initialisation,
// so that no background zeroing pollutes the counters) holding a freshly
// created image for every export that names a file. Only the written
// regions of the filesystem image are copied.
func WriteDatastore(ctx context.Context, workDir string, dev Device, exports []GuestExport) error {
	qemuImg, err := NeedTool("qemu-img", "qemu-utils")
	if err != nil {
		return err
	}
	mkfs, err := NeedTool("mkfs.ext4", "e2fsprogs")
	if err != nil {
		return err
	}
	stage := filepath.Join(workDir, "datastore")
	if err := os.RemoveAll(stage); err != nil {
		return fmt.Errorf("paths: %w", err)
	}
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return fmt.Errorf("paths: %w", err)
	}
	defer os.RemoveAll(stage)
	for _, e := range exports {
		if strings.HasPrefix(e.File, "/") {
			continue
		}
		if e.File == "" || strings.Contains(e.File, "/") {
			return fmt.Errorf("paths: datastore file %q", e.File)
		}
		if err := run(ctx, qemuImg, "create", "-q", "-f", e.Format, filepath.Join(stage, e.File), strconv.FormatInt(e.Size, 10)); err != nil {
			return err
		}
	}
	img := filepath.Join(workDir, "datastore.ext4")
	defer os.Remove(img)
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		return fmt.Errorf("paths: %w", err)
	}
	if err := os.Truncate(img, dev.Size()); err != nil {
		return fmt.Errorf("paths: %w", err)
	}
	if err := run(ctx, mkfs, "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", "-d", stage, img); err != nil {
		return err
	}
	return copySparse(ctx, img, dev)
}

// copySparse copies the data regions of the file at path to dev at the
// same offsets.
func copySparse(ctx context.Context, path string, dev Device) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("paths: %w", err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("paths: %w", err)
	}
	if size > dev.Size() {
		return fmt.Errorf("paths: %s (%d bytes) does not fit the %d-byte device", path, size, dev.Size())
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			return fmt.Errorf("paths: SEEK_DATA: %w", err)
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("paths: SEEK_HOLE: %w", err)
		}
		// Whole 4 KiB blocks, so every write is aligned for the LUN.
		start, end := data&^4095, min(size, (hole+4095)&^4095)
		for o := start; o < end; o += int64(len(buf)) {
			n := min(int64(len(buf)), end-o)
			if _, err := f.ReadAt(buf[:n], o); err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("paths: %w", err)
			}
			if err := dev.WriteAt(ctx, buf[:n], o); err != nil {
				return fmt.Errorf("paths: datastore write at %d: %w", o, err)
			}
		}
		off = end
	}
	return dev.Flush(ctx)
}
