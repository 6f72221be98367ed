package transfer_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/lunway/lunway/blockdev/mem"
	"github.com/lunway/lunway/image"
	"github.com/lunway/lunway/image/disk"
	"github.com/lunway/lunway/image/transfer"
)

// Example shows what `lunway export` and `lunway import` do: export a
// Device to a qcow2 file with a progress bar, then import the file into
// another Device and verify it.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	src, _ := mem.New(64<<20, nil)
	defer src.Close()
	block := make([]byte, 512)
	copy(block, "hello, lunway")
	if err := src.WriteAt(ctx, block, 4096, 0); err != nil {
		fmt.Println(err)
		return
	}

	path := filepath.Join(dir, "disk.qcow2")
	bar := transfer.NewBar(os.Stderr, "export "+path) // quiet unless stderr is a terminal
	res, err := transfer.ExportFile(ctx, src, path, &disk.CreateOptions{Format: image.QCOW2},
		&transfer.Options{Progress: bar.Update, Verify: true})
	bar.Finish(res.Progress)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("exported", transfer.Bytes(res.Total), "data", transfer.Bytes(res.Data), "verified", res.Verified)

	r, _ := disk.Open(path, nil) // the format is detected by content
	defer r.Close()
	dst, _ := mem.New(r.Size(), nil)
	defer dst.Close()
	res, err = transfer.Import(ctx, r, dst, &transfer.Options{DestinationZeroed: true, Verify: true})
	fmt.Println("imported", r.Format(), "data", transfer.Bytes(res.Data), "verified", res.Verified, err)
	// Output:
	// exported 64.0 MiB data 64.0 KiB verified true
	// imported qcow2 data 64.0 KiB verified true <nil>
}
