package disk

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/lunway/lunway/image"
	"github.com/lunway/lunway/image/qcow2"
	"github.com/lunway/lunway/image/raw"
	"github.com/lunway/lunway/image/vhd"
	"github.com/lunway/lunway/image/vhdx"
	"github.com/lunway/lunway/image/vmdk"
)

// CreateOptions configure Create and NewWriter.
type CreateOptions struct {
	// Format of the new image (required).
	Format image.Format
	// Subformat, qemu-img's names: for vmdk monolithicSparse (default),
	// streamOptimized or monolithicFlat; for vpc and vhdx dynamic
	// (default) or fixed. Empty for raw and qcow2.
	Subformat string
	// QCOW2Version is 3 (default, compat=1.1) or 2 (compat=0.10).
	QCOW2Version int
	// ClusterSize is the qcow2 cluster, VMDK grain or VHD/VHDX block size
	// in bytes; 0 takes the format's default.
	ClusterSize int
}

// Validate checks the options.
func (o *CreateOptions) Validate() error {
	switch o.Format {
	case image.Raw, image.QCOW2:
		if o.Subformat != "" {
			return image.Unsupportedf("%s: subformat %q", o.Format, o.Subformat)
		}
	case image.VMDK:
		switch vmdk.Subformat(o.Subformat) {
		case "", vmdk.MonolithicSparse, vmdk.StreamOptimized, vmdk.MonolithicFlat:
		default:
			return image.Unsupportedf("vmdk: subformat %q (monolithicSparse, streamOptimized or monolithicFlat)", o.Subformat)
		}
	case image.VHD, image.VHDX:
		if o.Subformat != "" && o.Subformat != "dynamic" && o.Subformat != "fixed" {
			return image.Unsupportedf("%s: subformat %q (dynamic or fixed)", o.Format, o.Subformat)
		}
	default:
		return image.Unsupportedf("output format %q", o.Format)
	}
	return nil
}

// Sequential reports whether the format and subformat are written
// strictly sequentially, so that NewWriter accepts a pipe.
func (o *CreateOptions) Sequential() bool {
	switch o.Format {
	case image.Raw:
		return true
	case image.VMDK:
		return o.Subformat == string(vmdk.StreamOptimized)
	case image.VHD, image.VHDX:
		return o.Subformat == "fixed"
	}
	return false
}

// NewWriter starts an image of size bytes on w. Formats that go back to
// fill in tables need w to implement io.WriterAt (an *os.File); the
// others (see Sequential) work on a pipe. monolithicFlat VMDKs need two
// files: use Create.
func NewWriter(w io.Writer, size int64, opts *CreateOptions) (image.Writer, error) {
	o := *opts
	if err := o.Validate(); err != nil {
		return nil, err
	}
	switch o.Format {
	case image.Raw:
		return raw.NewWriter(w, size)
	case image.QCOW2:
		return qcow2.NewWriter(w, size, &qcow2.WriterOptions{Version: o.QCOW2Version, ClusterSize: o.ClusterSize})
	case image.VMDK:
		if o.Subformat == string(vmdk.MonolithicFlat) {
			return nil, image.Unsupportedf("vmdk: monolithicFlat needs a descriptor and an extent file; use Create")
		}
		return vmdk.NewWriter(w, size, &vmdk.WriterOptions{Subformat: vmdk.Subformat(o.Subformat), GrainSize: o.ClusterSize})
	case image.VHD:
		return vhd.NewWriter(w, size, &vhd.WriterOptions{Type: vhd.Type(o.Subformat), BlockSize: o.ClusterSize})
	case image.VHDX:
		return vhdx.NewWriter(w, size, &vhdx.WriterOptions{Type: vhdx.Type(o.Subformat), BlockSize: o.ClusterSize})
	}
	return nil, image.Unsupportedf("output format %q", o.Format)
}

// Create makes a new image file at path (truncating an existing one) and
// returns its writer. The writer's Close finishes the image, syncs and
// closes the file(s). A monolithicFlat VMDK gets its extent next to the
// descriptor, named after it ("disk.vmdk" → "disk-flat.vmdk").
func Create(path string, size int64, opts *CreateOptions) (image.Writer, error) {
	o := *opts
	if err := o.Validate(); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	files := []*os.File{f}
	var w image.Writer
	if o.Format == image.VMDK && o.Subformat == string(vmdk.MonolithicFlat) {
		base := strings.TrimSuffix(filepath.Base(path), ".vmdk")
		name := base + "-flat.vmdk"
		var ef *os.File
		ef, err = os.OpenFile(filepath.Join(filepath.Dir(path), name), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err == nil {
			files = append(files, ef)
			w, err = vmdk.NewFlatWriter(f, name, ef, size)
		}
	} else {
		w, err = NewWriter(f, size, &o)
	}
	if err != nil {
		for _, f := range files {
			f.Close()
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &fileWriter{Writer: w, files: files}, nil
}

// fileWriter syncs and closes the files under a Writer.
type fileWriter struct {
	image.Writer
	files []*os.File
}

func (w *fileWriter) Close() error {
	errs := []error{w.Writer.Close()}
	for _, f := range w.files {
		errs = append(errs, f.Sync(), f.Close())
	}
	return errors.Join(errs...)
}
