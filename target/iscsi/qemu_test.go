package iscsi_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lunway/lunway/internal/testenv"
	"github.com/lunway/lunway/target/iscsitest"
)

func runCmd(t *testing.T, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// TestQEMUConvertCompare copies a random 64 MiB image onto a LUN with
// qemu-img convert -n over iscsi:// and compares it back.
func TestQEMUConvertCompare(t *testing.T) {
	qimg := testenv.NeedQEMU(t, "qemu-img")
	srv := iscsitest.Start(t, &iscsitest.Options{SizeBytes: 64 << 20})
	img := filepath.Join(t.TempDir(), "src.raw")
	data := randBytes(64, 64<<20)
	// Leave holes so that the copy exercises zero detection too.
	clear(data[8<<20 : 12<<20])
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	url := srv.URL(0)
	if out, err := runCmd(t, 2*time.Minute, qimg, "convert", "-n", "-f", "raw", "-O", "raw", img, url); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	if out, err := runCmd(t, 2*time.Minute, qimg, "compare", "-f", "raw", "-F", "raw", img, url); err != nil {
		t.Fatalf("qemu-img compare: %v\n%s", err, out)
	}
	// Change one block on the LUN behind qemu's back: compare must notice.
	srv.Devices[0].WriteAt(context.Background(), make([]byte, 512), 512, 0)
	if out, err := runCmd(t, 2*time.Minute, qimg, "compare", "-f", "raw", "-F", "raw", img, url); err == nil {
		t.Fatalf("qemu-img compare missed a changed block:\n%s", out)
	}
}

// TestQEMUIO writes and verifies patterns with qemu-io's aio commands.
func TestQEMUIO(t *testing.T) {
	qio := testenv.NeedQEMU(t, "qemu-io")
	srv := iscsitest.Start(t, &iscsitest.Options{SizeBytes: 64 << 20})
	url := srv.URL(0)
	var args []string
	for i := 0; i < 16; i++ {
		args = append(args, "-c", "aio_write -P "+itoa(0x10+i)+" "+itoa(i*1<<20)+" 1M")
	}
	args = append(args, "-c", "aio_flush")
	for i := 0; i < 16; i++ {
		args = append(args, "-c", "aio_read -P "+itoa(0x10+i)+" "+itoa(i*1<<20)+" 1M")
	}
	args = append(args, "-c", "aio_flush", "-c", "write -z 40M 64k", "-c", "read -P 0 40M 64k")
	out, err := runCmd(t, 2*time.Minute, qio, append([]string{"-f", "raw"}, append(args, url)...)...)
	if err != nil || strings.Contains(out, "Pattern verification failed") || strings.Contains(out, "failed") {
		t.Fatalf("qemu-io: %v\n%s", err, out)
	}
	if n := strings.Count(out, "read 1048576/1048576 bytes"); n != 16 {
		t.Fatalf("qemu-io verified %d of 16 reads:\n%s", n, out)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
