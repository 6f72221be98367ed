package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// format is one image format of the benchmark.
type format struct {
	name  string // lunway export --format
	qemu  string // qemu-img -O / -f
	qopts string // qemu-img -o
	ext   string
}

var formats = []format{
	{"raw", "raw", "", "raw"},
	{"qcow2", "qcow2", "", "qcow2"},
	{"vmdk", "vmdk", "subformat=monolithicSparse", "vmdk"},
	{"vmdk-stream", "vmdk", "subformat=streamOptimized", "vmdk"},
	{"vhd", "vpc", "subformat=dynamic,force_size=on", "vhd"},
	{"vhdx", "vhdx", "subformat=dynamic", "vhdx"},
}

const iqn = "iqn.2026-11.dev.lunway:imagebench"

func main() {
	size := flag.String("size", "4G", "virtual disk size (M or G suffix)")
	fraction := flag.Float64("fraction", 0.25, "fraction of the disk holding data")
	runs := flag.Int("runs", 3, "runs per measurement (the median is reported)")
	dir := flag.String("dir", os.TempDir(), "scratch directory (needs about 2.5 times the data)")
	only := flag.String("formats", "", "comma-separated formats (default: all)")
	backend := flag.String("backend", "file", "the LUN's backend: file or blockmap")
	lunway := flag.String("lunway", "", "lunway binary (default: go build ./cmd/lunway)")
	out := flag.String("out", "", "also write the Markdown report to this file")
	flag.Parse()
	if err := run(*size, *fraction, *runs, *dir, *only, *backend, *lunway, *out); err != nil {
		fmt.Fprintln(os.Stderr, "image bench:", err)
		os.Exit(1)
	}
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q", s)
	}
	return n * mult, nil
}

// bench is one benchmark run's state.
type bench struct {
	work, lunway, url string
	data              int64
	runs              int
	daemon            *exec.Cmd
}

func run(sizeArg string, fraction float64, runs int, dir, only, backend, lunway, out string) error {
	size, err := parseSize(sizeArg)
	if err != nil || size%(1<<20) != 0 {
		return fmt.Errorf("-size %q: a positive multiple of 1M", sizeArg)
	}
	if backend != "file" && backend != "blockmap" {
		return fmt.Errorf("-backend %q: file or blockmap", backend)
	}
	work, err := os.MkdirTemp(dir, "imagebench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	b := &bench{work: work, lunway: lunway, runs: runs}
	if b.lunway == "" {
		b.lunway = filepath.Join(work, "lunway")
		if out, err := exec.Command("go", "build", "-o", b.lunway, "./cmd/lunway").CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/lunway: %v\n%s", err, out)
		}
	}
	src := filepath.Join(work, "disk.raw")
	if b.data, err = makeSource(src, size, fraction); err != nil {
		return err
	}
	if err := b.startDaemon(size, backend); err != nil {
		return err
	}
	defer b.stopDaemon()

	var report strings.Builder
	mib := float64(b.data) / (1 << 20)
	fmt.Fprintf(&report, "%s virtual disk, %.0f MiB of data (%.0f%%, random, in 1 MiB runs), a %s LUN of a running daemon over loopback iSCSI; "+
		"MiB/s of allocated data, median of %d runs; ratio is Lunway's rate over qemu-img's.\n\n",
		sizeArg, mib, fraction*100, backend, runs)
	report.WriteString("| format | import: lunway | qemu-img | ratio | export: lunway | qemu-img | ratio |\n")
	report.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
	fmt.Print(report.String())
	for _, f := range formats {
		if only != "" && !slices.Contains(strings.Split(only, ","), f.name) {
			continue
		}
		row, err := b.format(f, src)
		if err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		fmt.Print(row)
		report.WriteString(row)
	}
	if out != "" {
		return os.WriteFile(out, []byte(report.String()), 0o644)
	}
	return nil
}

// format measures one format and returns its table row.
func (b *bench) format(f format, src string) (string, error) {
	img := filepath.Join(b.work, "src."+f.ext)
	args := []string{"convert", "-f", "raw", "-O", f.qemu}
	if f.qopts != "" {
		args = append(args, "-o", f.qopts)
	}
	if err := cmd("qemu-img", append(args, src, img)...); err != nil {
		return "", err
	}
	defer os.Remove(img)
	// Import: the LUN is emptied before each run.
	impOurs, err := b.median(b.emptyLUN, func() error { return cmd(b.lunway, "import", "-q", img, b.url) })
	if err != nil {
		return "", err
	}
	if err := cmd("qemu-img", "compare", "-f", f.qemu, "-F", "raw", img, b.url); err != nil {
		return "", fmt.Errorf("lunway import differs: %w", err)
	}
	impQemu, err := b.median(b.emptyLUN, func() error {
		return cmd("qemu-img", "convert", "-n", "-t", "writeback", "-f", f.qemu, "-O", "raw", img, b.url)
	})
	if err != nil {
		return "", err
	}
	// Export: the LUN holds the disk.
	if err := cmd(b.lunway, "import", "-q", img, b.url); err != nil {
		return "", err
	}
	out := filepath.Join(b.work, "out."+f.ext)
	clean := func() error {
		os.Remove(out)
		os.Remove(filepath.Join(b.work, "out-flat.vmdk"))
		return nil
	}
	expOurs, err := b.median(clean, func() error { return cmd(b.lunway, "export", "-q", b.url, out, "--format", f.name) })
	if err != nil {
		return "", err
	}
	if err := cmd("qemu-img", "compare", "-f", f.qemu, "-F", "raw", out, src); err != nil {
		return "", fmt.Errorf("lunway export differs: %w", err)
	}
	expQemu, err := b.median(clean, func() error {
		args := []string{"convert", "-f", "raw", "-O", f.qemu}
		if f.qopts != "" {
			args = append(args, "-o", f.qopts)
		}
		if err := cmd("qemu-img", append(args, b.url, out)...); err != nil {
			return err
		}
		return fsync(out)
	})
	if err != nil {
		return "", err
	}
	clean()
	rate := func(d time.Duration) float64 { return float64(b.data) / (1 << 20) / d.Seconds() }
	return fmt.Sprintf("| %s | %.0f | %.0f | %.2f | %.0f | %.0f | %.2f |\n", f.name,
		rate(impOurs), rate(impQemu), impQemu.Seconds()/impOurs.Seconds(),
		rate(expOurs), rate(expQemu), expQemu.Seconds()/expOurs.Seconds()), nil
}

// emptyLUN unmaps the whole LUN (and flushes), so that every import
// starts from the same state.
func (b *bench) emptyLUN() error {
	args := []string{"-f", "raw"}
	const piece = 1 << 30 // qemu-io takes at most 2 GiB - 512 per request
	for off, size := int64(0), b.size(); off < size; off += piece {
		args = append(args, "-c", fmt.Sprintf("discard %d %d", off, min(piece, size-off)))
	}
	return cmd("qemu-io", append(args, "-c", "flush", b.url)...)
}

func (b *bench) size() int64 {
	st, err := os.Stat(filepath.Join(b.work, "disk.raw"))
	if err != nil {
		return 0
	}
	return st.Size()
}

// median runs prep (untimed) then fn (timed) runs times.
func (b *bench) median(prep, fn func() error) (time.Duration, error) {
	var ds []time.Duration
	for range b.runs {
		if err := prep(); err != nil {
			return 0, err
		}
		start := time.Now()
		if err := fn(); err != nil {
			return 0, err
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	return ds[len(ds)/2], nil
}

func (b *bench) startDaemon(size int64, backend string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	be := "{type: file, path: lun0.img}"
	if backend == "blockmap" {
		be = "{type: blockmap, volume: vol0, store: {type: dir, path: store}}"
	}
	cfg := fmt.Sprintf(`data_dir: %s
log: {level: warn}
portal_groups: [{tag: 1, listen: [%q]}]
targets:
  - name: %s
    luns:
      - {lun: 0, size: %d, backend: %s}
`, filepath.Join(b.work, "data"), addr, iqn, size, be)
	cfgPath := filepath.Join(b.work, "lunway.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	log, err := os.Create(filepath.Join(b.work, "serve.log"))
	if err != nil {
		return err
	}
	b.daemon = exec.Command(b.lunway, "serve", "--config", cfgPath)
	b.daemon.Stdout, b.daemon.Stderr = log, log
	if err := b.daemon.Start(); err != nil {
		return err
	}
	b.url = "iscsi://" + addr + "/" + iqn + "/0"
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("lunway serve did not start; see serve.log")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (b *bench) stopDaemon() {
	if b.daemon != nil && b.daemon.Process != nil {
		b.daemon.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { b.daemon.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			b.daemon.Process.Kill()
			<-done
		}
	}
}

// makeSource writes a sparse raw file with fraction of its 1 MiB runs
// random and returns the data bytes.
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
			v := rng.Uint64() | 1
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

// fsync makes a file qemu-img wrote durable (qemu-img convert does not
// sync its output file; our export does).
func fsync(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func cmd(name string, args ...string) error {
	var out bytes.Buffer
	c := exec.Command(name, args...)
	c.Stdout, c.Stderr = &out, &out
	if err := c.Run(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}
