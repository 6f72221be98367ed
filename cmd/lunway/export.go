package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/file"
	"github.com/lunway/lunway/cmd/lunway/internal/config"
	"github.com/lunway/lunway/image"
	"github.com/lunway/lunway/image/disk"
	"github.com/lunway/lunway/image/transfer"
	"github.com/spf13/cobra"
)

// exportFormats are the output formats of lunway export, by name.
var exportFormats = map[string]disk.CreateOptions{
	"raw":         {Format: image.Raw},
	"qcow2":       {Format: image.QCOW2},
	"vmdk":        {Format: image.VMDK, Subformat: "monolithicSparse"},
	"vmdk-stream": {Format: image.VMDK, Subformat: "streamOptimized"},
	"vmdk-flat":   {Format: image.VMDK, Subformat: "monolithicFlat"},
	"vhd":         {Format: image.VHD, Subformat: "dynamic"},
	"vhd-fixed":   {Format: image.VHD, Subformat: "fixed"},
	"vhdx":        {Format: image.VHDX, Subformat: "dynamic"},
	"vhdx-fixed":  {Format: image.VHDX, Subformat: "fixed"},
}

// formatAliases accept qemu-img's names too.
var formatAliases = map[string]string{"vpc": "vhd", "img": "raw"}

func formatNames() string {
	var names []string
	for n := range exportFormats {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// formatFromName picks the output format from a file name's extension.
func formatFromName(path string) (string, bool) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".raw", ".img":
		return "raw", true
	case ".qcow2":
		return "qcow2", true
	case ".vmdk":
		return "vmdk", true
	case ".vhd", ".vpc":
		return "vhd", true
	case ".vhdx":
		return "vhdx", true
	}
	return "", false
}

type exportFlags struct {
	ep          endpointFlags
	tf          transferFlags
	format      string
	clusterSize string
	compat      string
	size        string
}

func newExportCmd() *cobra.Command {
	var f exportFlags
	cmd := &cobra.Command{
		Use:   "export LUN-OR-VOLUME IMAGE --format FORMAT",
		Short: "Copy a LUN or volume into a disk image (raw, qcow2, VMDK, VHD, VHDX)",
		Long: `Copy a LUN or volume into a new disk image file (replacing an existing one),
or to standard output when IMAGE is "-" (formats written sequentially only: raw,
vmdk-stream, vhd-fixed, vhdx-fixed).

` + endpointHelp + `

Formats (--format; without it, taken from IMAGE's extension):
  raw           a sparse raw file
  qcow2         qcow2 version 3 (--qcow2-compat 0.10 for version 2)
  vmdk          VMDK monolithicSparse (hosted sparse extent)
  vmdk-stream   VMDK streamOptimized (compressed, for OVA/ESXi import)
  vmdk-flat     VMDK monolithicFlat: IMAGE is the descriptor, NAME-flat.vmdk the data
  vhd           VHD dynamic (qemu-img: vpc)
  vhd-fixed     VHD fixed
  vhdx          VHDX dynamic
  vhdx-fixed    VHDX fixed
--cluster-size sets the qcow2 cluster, VMDK grain or VHD/VHDX block size;
--size makes the image's virtual disk larger than the LUN.

The copy is sparse: ranges the LUN reports unallocated (the block map of a
volume, GET LBA STATUS of an iSCSI LUN, holes of a file) are not read, and
all-zero ranges are left as holes in the image. --verify reopens the image and
compares it with the LUN. --resume works for raw images: an interrupted export
is finished by comparing what is in place and writing only what differs.

Exit status: 0 on success, 2 for usage errors, 1 for failures during the copy.`,
		Example: `  lunway export iscsi://127.0.0.1:3260/iqn.2026-11.dev.lunway:default/0 disk.qcow2
  lunway export volume:/var/lib/lunway/store/vm1 vm1.vmdk --format vmdk-stream
  lunway export lun:iqn.2026-11.dev.lunway:db/0 - --format raw | gzip > db.raw.gz`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return flat(runExport(cmd, &f, args))
		},
	}
	f.ep.add(cmd)
	f.tf.add(cmd)
	fl := cmd.Flags()
	fl.StringVarP(&f.format, "format", "O", "", "output format: "+formatNames())
	fl.StringVar(&f.clusterSize, "cluster-size", "", "qcow2 cluster, VMDK grain or VHD/VHDX block size (format default)")
	fl.StringVar(&f.compat, "qcow2-compat", "", "qcow2 version: 1.1 (default) or 0.10")
	fl.StringVar(&f.size, "size", "", "virtual size of the image, at least the LUN's (default: the LUN's)")
	return cmd
}

// createOptions resolves the output format flags.
func (f *exportFlags) createOptions(dst string) (disk.CreateOptions, string, error) {
	name := strings.ToLower(f.format)
	if a, ok := formatAliases[name]; ok {
		name = a
	}
	if name == "" {
		n, ok := formatFromName(dst)
		if !ok {
			return disk.CreateOptions{}, "", fmt.Errorf("--format is needed: %q has no known extension (%s)", dst, formatNames())
		}
		name = n
	}
	co, ok := exportFormats[name]
	if !ok {
		return disk.CreateOptions{}, "", fmt.Errorf("--format %q: not one of %s", f.format, formatNames())
	}
	if f.clusterSize != "" {
		v, err := parseSizeFlag(f.clusterSize)
		if err != nil || v <= 0 || v > 256<<20 {
			return disk.CreateOptions{}, "", fmt.Errorf("--cluster-size %q: %v", f.clusterSize, err)
		}
		co.ClusterSize = int(v)
	}
	switch f.compat {
	case "":
	case "1.1", "v3":
		co.QCOW2Version = 3
	case "0.10", "v2":
		co.QCOW2Version = 2
	default:
		return disk.CreateOptions{}, "", fmt.Errorf("--qcow2-compat %q: 1.1 or 0.10", f.compat)
	}
	if f.compat != "" && co.Format != image.QCOW2 {
		return disk.CreateOptions{}, "", fmt.Errorf("--qcow2-compat applies to qcow2 only")
	}
	if err := co.Validate(); err != nil {
		return disk.CreateOptions{}, "", err
	}
	return co, name, nil
}

func runExport(cmd *cobra.Command, f *exportFlags, args []string) error {
	var srcArg, dst string
	switch {
	case len(args) == 2:
		srcArg, dst = args[0], args[1]
	case f.ep.target != "":
		dst = args[0]
	default:
		return usageError{errors.New("export needs a LUN or volume and an image path")}
	}
	spec, err := parseEndpoint(srcArg, &f.ep)
	if err != nil {
		return usageError{err}
	}
	co, fname, err := f.createOptions(dst)
	if err != nil {
		return usageError{err}
	}
	toStdout := dst == "-"
	if toStdout && !co.Sequential() {
		return usageError{fmt.Errorf("--format %s cannot be written to standard output (raw, vmdk-stream, vhd-fixed and vhdx-fixed can)", fname)}
	}
	if f.tf.resume && (co.Format != image.Raw || toStdout) {
		return usageError{errors.New("--resume works for raw image files only; other formats are written again from the start")}
	}
	if toStdout && f.tf.verify {
		return usageError{errors.New("--verify needs an image file, not standard output")}
	}
	opts, err := f.tf.options()
	if err != nil {
		return err
	}
	var extra int64
	if f.size != "" {
		if extra, err = parseSizeFlag(f.size); err != nil {
			return usageError{fmt.Errorf("--size: %w", err)}
		}
	}
	ctx, stop := signalContext(cmd)
	defer stop()
	ep, err := openEndpoint(ctx, spec, &f.ep, openMode{readOnly: true})
	if err != nil {
		return err
	}
	defer ep.Close()
	size := ep.dev.Info().SizeBytes
	if extra != 0 && extra < size {
		return usageError{fmt.Errorf("--size %s is smaller than %s's %s", config.Size(extra), spec, config.Size(size))}
	}
	imgSize := max(size, extra)
	label := "export " + filepath.Base(dst)
	if toStdout {
		label = "export"
	}
	var finish func(transfer.Progress)
	opts.Progress, finish = progress(f.tf.quiet, label)
	start := time.Now()
	var res transfer.Result
	switch {
	case co.Format == image.Raw && !toStdout:
		res, err = exportRawFile(ctx, ep.dev, dst, imgSize, opts)
	case toStdout:
		res, err = exportStream(ctx, ep.dev, os.Stdout, imgSize, &co, opts)
	default:
		res, err = exportImage(ctx, ep.dev, dst, imgSize, &co, opts)
	}
	finish(res.Progress)
	if err != nil {
		return copyErr(ctx, "export", err)
	}
	if !f.tf.quiet && !toStdout {
		summary("exported "+spec.String()+" to", dst+" ("+fname+")", res, time.Since(start))
	}
	return nil
}

// exportImage writes a new image file of a non-raw format and, with
// Verify, reopens it and compares.
func exportImage(ctx context.Context, dev blockdev.Device, path string, size int64, co *disk.CreateOptions, opts *transfer.Options) (transfer.Result, error) {
	w, err := disk.Create(path, size, co)
	if err != nil {
		return transfer.Result{}, usageError{err}
	}
	res, err := transfer.Export(ctx, dev, w, opts)
	if cerr := w.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("finish %s: %w", path, cerr)
	}
	if err != nil || !opts.Verify {
		return res, err
	}
	r, err := disk.Open(path, &disk.OpenOptions{Format: co.Format})
	if err != nil {
		return res, fmt.Errorf("verify: reopen %s: %w", path, err)
	}
	defer r.Close()
	vo := *opts
	vo.Progress = nil
	if err := transfer.Verify(ctx, r, dev, &vo); err != nil {
		return res, err
	}
	res.Verified = true
	return res, nil
}

// exportStream writes a sequential format to w (standard output).
func exportStream(ctx context.Context, dev blockdev.Device, w io.Writer, size int64, co *disk.CreateOptions, opts *transfer.Options) (transfer.Result, error) {
	iw, err := disk.NewWriter(w, size, co)
	if err != nil {
		return transfer.Result{}, err
	}
	res, err := transfer.Export(ctx, dev, iw, opts)
	if cerr := iw.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return res, err
}

// exportRawFile copies dev into a sparse raw file as an import of the
// device into the file's Device: writes go out in parallel, holes are
// never written, and --resume compares what an interrupted export left.
func exportRawFile(ctx context.Context, dev blockdev.Device, path string, size int64, opts *transfer.Options) (transfer.Result, error) {
	if !opts.Resume {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return transfer.Result{}, err
		}
	}
	_, statErr := os.Stat(path)
	out, err := file.Open(ctx, path, &file.Options{Create: true, SizeBytes: size})
	if err != nil {
		return transfer.Result{}, err
	}
	if cur := out.Info().SizeBytes; cur < size {
		if err := out.Resize(ctx, size); err != nil {
			out.Close()
			return transfer.Result{}, err
		}
	}
	o := *opts
	o.DestinationZeroed = statErr != nil && !opts.Resume
	res, err := transfer.Import(ctx, deviceImage{dev}, out, &o)
	if cerr := out.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return res, err
}

// deviceImage reads a Device as a raw image.Reader, with its allocation
// (AllocationStatus) as the image's map.
type deviceImage struct{ dev blockdev.Device }

func (d deviceImage) Format() image.Format { return image.Raw }
func (d deviceImage) Size() int64          { return d.dev.Info().SizeBytes }
func (d deviceImage) Close() error         { return nil }

// ReadAt reads through the Device; unaligned requests (never made by
// transfer, which works on block multiples) go through a bounce buffer.
func (d deviceImage) ReadAt(p []byte, off int64) (int, error) {
	n, eof := image.CheckRead(p, off, d.Size())
	if n == 0 {
		return 0, eof
	}
	bs := int64(d.dev.Info().LogicalBlockSize)
	ctx := context.Background()
	if off%bs == 0 && int64(n)%bs == 0 {
		if err := d.dev.ReadAt(ctx, p[:n], off); err != nil {
			return 0, err
		}
		return n, eof
	}
	lo := off / bs * bs
	hi := (off + int64(n) + bs - 1) / bs * bs
	buf := make([]byte, hi-lo)
	if err := d.dev.ReadAt(ctx, buf, lo); err != nil {
		return 0, err
	}
	copy(p[:n], buf[off-lo:])
	return n, eof
}

func (d deviceImage) Map(ctx context.Context, off, length int64) ([]image.Extent, error) {
	length, err := image.CheckMap(off, length, d.Size())
	if err != nil || length == 0 {
		return nil, err
	}
	as, ok := d.dev.(blockdev.AllocationStatuser)
	if !ok {
		return []image.Extent{{Off: off, Len: length, Kind: image.Data}}, nil
	}
	var out image.ExtentList
	for pos, end := off, off+length; pos < end; {
		exts, err := as.AllocationStatus(ctx, pos, end-pos)
		if errors.Is(err, blockdev.ErrNotSupported) {
			out.Add(pos, end-pos, image.Data)
			break
		}
		if err != nil {
			return nil, err
		}
		if len(exts) == 0 {
			return nil, fmt.Errorf("allocation status at %d: no extent", pos)
		}
		for _, e := range exts {
			if e.Off != pos || e.Len <= 0 || e.Len > end-pos {
				return nil, fmt.Errorf("allocation status at %d: bad extent %+v", pos, e)
			}
			k := image.Data
			if e.State != blockdev.Mapped {
				k = image.Hole
			}
			out.Add(pos, e.Len, k)
			pos += e.Len
		}
	}
	return out, nil
}
