package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lunway/lunway/blockdev/file"
	"github.com/lunway/lunway/image"
	"github.com/lunway/lunway/image/disk"
	"github.com/lunway/lunway/image/transfer"
)

func main() {
	size := flag.String("size", "4G", "virtual disk size (K, M, G suffixes)")
	fraction := flag.Float64("fraction", 0.25, "fraction of the disk holding data")
	dir := flag.String("dir", os.TempDir(), "scratch directory")
	runs := flag.Int("runs", 3, "runs per measurement (the median is reported)")
	formats := flag.String("formats", "raw,qcow2,vmdk,vmdk-stream,vpc,vhdx", "formats to measure")
	conc := flag.Int("concurrency", 4, "transfer concurrency")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "imagebench:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if err := run(*size, *fraction, *dir, *runs, *formats, *conc); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "imagebench:", err)
		os.Exit(1)
	}
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n * mult, err
}

type format struct {
	name, qemu, qopts string
	create            disk.CreateOptions
}

var all = []format{
	{"raw", "raw", "", disk.CreateOptions{Format: image.Raw}},
	{"qcow2", "qcow2", "", disk.CreateOptions{Format: image.QCOW2}},
	{"vmdk", "vmdk", "subformat=monolithicSparse", disk.CreateOptions{Format: image.VMDK}},
	{"vmdk-stream", "vmdk", "subformat=streamOptimized", disk.CreateOptions{Format: image.VMDK, Subformat: "streamOptimized"}},
	{"vpc", "vpc", "subformat=dynamic,force_size=on", disk.CreateOptions{Format: image.VHD}},
	{"vhdx", "vhdx", "subformat=dynamic", disk.CreateOptions{Format: image.VHDX}},
}

func run(sizeArg string, fraction float64, dir string, runs int, formats string, conc int) error {
	size, err := parseSize(sizeArg)
	if err != nil || size <= 0 || size%(1<<20) != 0 {
		return fmt.Errorf("size %q: want a positive multiple of 1M", sizeArg)
	}
	work, err := os.MkdirTemp(dir, "imagebench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	src := filepath.Join(work, "src.raw")
	data, err := makeSource(src, size, fraction)
	if err != nil {
		return err
	}
	mib := float64(data) / (1 << 20)
	fmt.Printf("source: %s virtual, %.0f MiB data (%.0f%%), %d runs, concurrency %d\n\n", sizeArg, mib, fraction*100, runs, conc)
	fmt.Printf("%-12s %14s %14s %7s   %14s %14s %7s\n", "format", "export MiB/s", "qemu-img", "ratio", "import MiB/s", "qemu-img", "ratio")
	ctx := context.Background()
	opts := &transfer.Options{Concurrency: conc}
	for _, f := range all {
		if !slices.Contains(strings.Split(formats, ","), f.name) {
			continue
		}
		img := filepath.Join(work, "img."+f.qemu)
		out := filepath.Join(work, "out.raw")
		ours := func() error {
			dev, err := file.Open(ctx, src, &file.Options{ReadOnly: true})
			if err != nil {
				return err
			}
			defer dev.Close()
			_, err = transfer.ExportFile(ctx, dev, img, &f.create, opts)
			return err
		}
		qemu := func() error {
			args := []string{"convert", "-f", "raw", "-O", f.qemu}
			if f.qopts != "" {
				args = append(args, "-o", f.qopts)
			}
			if err := qemuImg(append(args, src, img)...); err != nil {
				return err
			}
			return fsync(img)
		}
		expOurs, err := median(runs, ours)
		if err != nil {
			return fmt.Errorf("%s export: %w", f.name, err)
		}
		expQemu, err := median(runs, qemu)
		if err != nil {
			return fmt.Errorf("%s qemu-img export: %w", f.name, err)
		}
		if err := ours(); err != nil { // import the image we made
			return err
		}
		impOurs, err := median(runs, func() error {
			os.Remove(out)
			dev, err := file.Open(ctx, out, &file.Options{Create: true, SizeBytes: size})
			if err != nil {
				return err
			}
			_, err = transfer.ImportFile(ctx, img, dev, &transfer.Options{Concurrency: conc, DestinationZeroed: true})
			if cerr := dev.Close(); err == nil {
				err = cerr
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("%s import: %w", f.name, err)
		}
		impQemu, err := median(runs, func() error {
			os.Remove(out)
			if err := qemuImg("convert", "-f", f.qemu, "-O", "raw", img, out); err != nil {
				return err
			}
			return fsync(out)
		})
		if err != nil {
			return fmt.Errorf("%s qemu-img import: %w", f.name, err)
		}
		if err := qemuImg("compare", "-f", "raw", "-F", "raw", out, src); err != nil {
			return fmt.Errorf("%s: round trip differs: %w", f.name, err)
		}
		rate := func(d time.Duration) float64 { return mib / d.Seconds() }
		fmt.Printf("%-12s %14.0f %14.0f %7.2f   %14.0f %14.0f %7.2f\n", f.name,
			rate(expOurs), rate(expQemu), expQemu.Seconds()/expOurs.Seconds(),
			rate(impOurs), rate(impQemu), impQemu.Seconds()/impOurs.Seconds())
		os.Remove(img)
		os.Remove(out)
		os.Remove(filepath.Join(work, "img-flat.vmdk"))
	}
	return nil
}

// makeSource writes a sparse raw file with fraction of its 1 MiB chunks
// filled with random data and returns the data bytes.
func makeSource(path string, size int64, fraction float64) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	buf := make([]byte, 1<<20)
	var data int64
	for off := int64(0); off < size; off += 1 << 20 {
		if rng.Float64() >= fraction {
			continue
		}
		for i := 0; i < len(buf); i += 8 {
			v := rng.Uint64()
			for j := range 8 {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		if _, err := f.WriteAt(buf, off); err != nil {
			return 0, err
		}
		data += 1 << 20
	}
	if err := f.Truncate(size); err != nil {
		return 0, err
	}
	return data, f.Sync()
}

// fsync makes a file qemu-img wrote durable: qemu-img convert does not
// sync its output, while our import flushes the Device and our export
// syncs the image, so the comparison includes the same durability.
func fsync(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func qemuImg(args ...string) error {
	out, err := exec.Command("qemu-img", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("qemu-img %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func median(runs int, fn func() error) (time.Duration, error) {
	var ds []time.Duration
	for range runs {
		start := time.Now()
		if err := fn(); err != nil {
			return 0, err
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	return ds[len(ds)/2], nil
}
