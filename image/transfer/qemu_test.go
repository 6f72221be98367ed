package transfer_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/lunway/lunway/blockdev/mem"
	"github.com/lunway/lunway/image"
	"github.com/lunway/lunway/image/disk"
	"github.com/lunway/lunway/image/internal/imagetest"
	"github.com/lunway/lunway/image/transfer"
)

var formats = []struct {
	name   string
	qemu   string // qemu-img -O and -o
	qopts  string
	create disk.CreateOptions
}{
	{"raw", "raw", "", disk.CreateOptions{Format: image.Raw}},
	{"qcow2-v3", "qcow2", "compat=1.1", disk.CreateOptions{Format: image.QCOW2}},
	{"qcow2-v2", "qcow2", "compat=0.10", disk.CreateOptions{Format: image.QCOW2, QCOW2Version: 2}},
	{"vmdk-monolithicSparse", "vmdk", "subformat=monolithicSparse", disk.CreateOptions{Format: image.VMDK}},
	{"vmdk-streamOptimized", "vmdk", "subformat=streamOptimized", disk.CreateOptions{Format: image.VMDK, Subformat: "streamOptimized"}},
	{"vmdk-monolithicFlat", "vmdk", "subformat=monolithicFlat", disk.CreateOptions{Format: image.VMDK, Subformat: "monolithicFlat"}},
	{"vhd-dynamic", "vpc", "subformat=dynamic,force_size=on", disk.CreateOptions{Format: image.VHD}},
	{"vhd-fixed", "vpc", "subformat=fixed,force_size=on", disk.CreateOptions{Format: image.VHD, Subformat: "fixed"}},
	{"vhdx-dynamic", "vhdx", "subformat=dynamic", disk.CreateOptions{Format: image.VHDX, ClusterSize: 1 << 20}},
	{"vhdx-fixed", "vhdx", "subformat=fixed", disk.CreateOptions{Format: image.VHDX, Subformat: "fixed"}},
}

// TestImportQemuImages imports images qemu-img made, in every format, into
// a sparse in-memory device: the device must hold the bytes of qemu-img
// convert -O raw, and only chunks with data may be allocated.
func TestImportQemuImages(t *testing.T) {
	const size = 6 << 20
	for i, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			dir := t.TempDir()
			data := imagetest.RandomSparse(size, 0.25, uint64(i+11))
			src := filepath.Join(dir, "src.raw")
			imagetest.WriteSparse(t, src, data)
			img := filepath.Join(dir, "img."+f.qemu)
			args := []string{"convert", "-f", "raw", "-O", f.qemu}
			if f.qopts != "" {
				args = append(args, "-o", f.qopts)
			}
			imagetest.QemuImg(t, append(args, src, img)...)
			ref := imagetest.ConvertToRaw(t, img, f.qemu)
			dev, err := mem.New(int64(len(ref)), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer dev.Close()
			res, err := transfer.ImportFile(context.Background(), img, dev, &transfer.Options{DestinationZeroed: true, Verify: true})
			if err != nil {
				t.Fatal(err)
			}
			imagetest.Equal(t, "device vs qemu-img", readDev(t, dev), ref)
			if got, max := mappedBytes(t, dev), chunksWithData(ref); got > max {
				t.Fatalf("device maps %d bytes, data in %d", got, max)
			}
			if !res.Verified {
				t.Fatal("not verified")
			}
		})
	}
}

// TestExportCycle exports a sparse device to every format (ExportFile with
// Verify), checks the file with qemu-img check and compare, reimports it
// into a fresh device and compares.
func TestExportCycle(t *testing.T) {
	ctx := context.Background()
	const size = 10 << 20
	data := imagetest.RandomSparse(size, 0.2, 77)
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	imagetest.WriteSparse(t, src, data)
	dev, err := mem.New(size, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if err := dev.WriteAt(ctx, data, 0, 0); err != nil {
		t.Fatal(err)
	}
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out."+f.qemu)
			res, err := transfer.ExportFile(ctx, dev, out, &f.create, &transfer.Options{Verify: true, Concurrency: 3})
			if err != nil {
				t.Fatal(err)
			}
			if !res.Verified || res.Data > chunksWithData(data) {
				t.Fatalf("export result %+v (data in %d)", res, chunksWithData(data))
			}
			switch f.qemu {
			case "qcow2", "vhdx":
				imagetest.QemuImg(t, "check", "-f", f.qemu, out)
			case "vmdk":
				if f.create.Subformat != "monolithicFlat" {
					imagetest.QemuImg(t, "check", "-f", f.qemu, out)
				}
			}
			imagetest.QemuImg(t, "compare", "-f", f.qemu, "-F", "raw", out, src)
			back, err := mem.New(size, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer back.Close()
			if _, err := transfer.ImportFile(ctx, out, back, nil); err != nil {
				t.Fatal(err)
			}
			imagetest.Equal(t, "reimported", readDev(t, back), data)
		})
	}
}

// TestExportToPipe streams a streamOptimized VMDK and a fixed VHD through
// a pipe (no seeking) and checks them with qemu-img.
func TestExportToPipe(t *testing.T) {
	ctx := context.Background()
	const size = 5 << 20
	data := imagetest.RandomSparse(size, 0.3, 78)
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	imagetest.WriteSparse(t, src, data)
	dev, err := mem.New(size, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if err := dev.WriteAt(ctx, data, 0, 0); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, qemu string
		opts       disk.CreateOptions
	}{
		{"streamOptimized", "vmdk", disk.CreateOptions{Format: image.VMDK, Subformat: "streamOptimized"}},
		{"vhd-fixed", "vpc", disk.CreateOptions{Format: image.VHD, Subformat: "fixed"}},
		{"vhdx-fixed", "vhdx", disk.CreateOptions{Format: image.VHDX, Subformat: "fixed"}},
		{"raw", "raw", disk.CreateOptions{Format: image.Raw}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !c.opts.Sequential() {
				t.Fatal("not sequential")
			}
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "out")
			f, err := os.Create(out)
			if err != nil {
				t.Fatal(err)
			}
			copied := make(chan error, 1)
			go func() {
				_, err := io.Copy(f, pr)
				copied <- err
			}()
			w, err := disk.NewWriter(pw, size, &c.opts)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := transfer.Export(ctx, dev, w, nil); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			pw.Close()
			if err := <-copied; err != nil {
				t.Fatal(err)
			}
			f.Close()
			pr.Close()
			imagetest.QemuImg(t, "compare", "-f", c.qemu, "-F", "raw", out, src)
		})
	}
}
