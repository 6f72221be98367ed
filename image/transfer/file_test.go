package transfer_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/lunway/lunway/blockdev/file"
	"github.com/lunway/lunway/image/internal/imagetest"
	"github.com/lunway/lunway/image/transfer"
)

// TestFileDevice imports a qcow2 image into a file LUN (blockdev/file)
// and exports it back: qemu-img compares the file with the source, and
// the file stays sparse.
func TestFileDevice(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const size = 64 << 20
	data := make([]byte, size)
	copy(data[5<<20:], imagetest.RandomSparse(1<<20, 1, 4))
	copy(data[40<<20+4096:], imagetest.RandomSparse(300<<10, 1, 5))
	src := filepath.Join(dir, "src.raw")
	imagetest.WriteSparse(t, src, data)
	img := filepath.Join(dir, "img.qcow2")
	imagetest.QemuImg(t, "convert", "-f", "raw", "-O", "qcow2", src, img)

	lun := filepath.Join(dir, "lun.img")
	dev, err := file.Open(ctx, lun, &file.Options{Create: true, SizeBytes: size})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if _, err := transfer.ImportFile(ctx, img, dev, &transfer.Options{Verify: true}); err != nil {
		t.Fatal(err)
	}
	imagetest.QemuImg(t, "compare", "-f", "raw", "-F", "raw", lun, src)
	var st os.FileInfo
	if st, err = os.Stat(lun); err != nil {
		t.Fatal(err)
	}
	if blocks := imagetest.AllocatedBytes(t, lun); blocks > 4<<20 {
		t.Fatalf("LUN file of %d bytes has %d allocated: holes were written", st.Size(), blocks)
	}
	out := filepath.Join(dir, "out.vhdx")
	if _, err := transfer.ExportFile(ctx, dev, out, &formats[8].create, &transfer.Options{Verify: true}); err != nil {
		t.Fatal(err)
	}
	imagetest.QemuImg(t, "compare", "-f", "vhdx", "-F", "raw", out, src)
}
