package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lunway/lunway/bench"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "librbd":
		err = librbd(os.Args[2:])
	case "libiscsi":
		err = libiscsi(os.Args[2:])
	case "report":
		err = report(os.Stdout, os.Args[2:])
	case "pairs":
		err = pairs(os.Stdout, os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ceph:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: ceph librbd -c CONF -k KEYRING -image POOL/IMAGE [-duration 10s] [-only w1,w2]\n       ceph libiscsi -url iscsi://HOST:PORT/IQN/LUN [-duration 10s] [-qd 1,32]\n       ceph report label=run.json[,run.json...] ...\n       ceph pairs label=run1.json,run2.json... label=run1.json,run2.json... ...")
	os.Exit(2)
}

// librbd runs `rbd bench` for each standard workload and prints the
// results as JSON.
func librbd(args []string) error {
	fs := flag.NewFlagSet("librbd", flag.ExitOnError)
	conf := fs.String("c", "", "ceph.conf")
	keyring := fs.String("k", "", "keyring")
	image := fs.String("image", "", "POOL/IMAGE")
	duration := fs.Duration("duration", 10*time.Second, "how long each workload runs")
	only := fs.String("only", "", "comma-separated workload names")
	fs.Parse(args)
	if *conf == "" || *image == "" {
		return fmt.Errorf("-c and -image are required")
	}
	var results []bench.Result
	for _, w := range bench.Standard(*duration) {
		if *only != "" && !slices.Contains(strings.Split(*only, ","), w.Name) {
			continue
		}
		r, err := rbdBench(*conf, *keyring, *image, w)
		if err != nil {
			return fmt.Errorf("%s: %w", w.Name, err)
		}
		fmt.Fprintf(os.Stderr, "librbd %s: %.0f IOPS\n", w.Name, r.IOPS)
		results = append(results, r)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(results)
}

// rbdBench runs one workload for w.Duration and reads the rate from the
// last progress line at or before it.
func rbdBench(conf, keyring, image string, w bench.Workload) (bench.Result, error) {
	ioType, pattern := "write", "seq"
	if w.ReadPercent == 100 {
		ioType = "read"
	}
	if w.Random {
		pattern = "rand"
	}
	args := []string{"-c", conf}
	if keyring != "" {
		args = append(args, "--keyring", keyring)
	}
	args = append(args, "bench", "--io-type", ioType, "--io-size", strconv.Itoa(w.BlockSize),
		"--io-threads", strconv.Itoa(w.QueueDepth), "--io-pattern", pattern, "--io-total", "1T", image)
	ctx, cancel := context.WithTimeout(context.Background(), w.Duration+3*time.Second)
	defer cancel()
	// rbd writes its progress through C stdio, block-buffered into a
	// pipe: line buffering makes every line arrive before the kill.
	cmd := exec.CommandContext(ctx, "stdbuf", append([]string{"-oL", "rbd"}, args...)...)
	// SIGTERM lets rbd close the image: a killed client keeps the image's
	// exclusive lock, and the next run's I/O waits until Ceph breaks it.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return bench.Result{}, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return bench.Result{}, err
	}
	limit := int64(w.Duration / time.Second)
	var last progress
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if p, ok := parseProgress(sc.Text()); ok && p.sec <= max(limit, 1) {
			last = p
		}
	}
	cmd.Wait() // killed at the deadline
	if last.sec == 0 {
		return bench.Result{}, fmt.Errorf("rbd %s: no progress line", strings.Join(args, " "))
	}
	iops := float64(last.ops) / float64(last.sec)
	return bench.Result{
		Workload:   w.Name,
		Ops:        last.ops,
		Bytes:      last.ops * int64(w.BlockSize),
		Elapsed:    time.Duration(last.sec) * time.Second,
		IOPS:       iops,
		MiBps:      iops * float64(w.BlockSize) / (1 << 20),
		QueueDepth: w.QueueDepth,
		BlockSize:  w.BlockSize,
	}, nil
}

type series struct {
	label string
	runs  map[string][]bench.Result
	order []string
}

// report prints the medians of every label and their ratio to the first.
func report(w io.Writer, args []string) error {
	var all []*series
	for _, arg := range args {
		label, files, err := readLabelled(arg)
		if err != nil {
			return err
		}
		s := &series{label: label, runs: map[string][]bench.Result{}}
		for _, rs := range files {
			for _, r := range rs {
				if _, ok := s.runs[r.Workload]; !ok {
					s.order = append(s.order, r.Workload)
				}
				s.runs[r.Workload] = append(s.runs[r.Workload], r)
			}
		}
		all = append(all, s)
	}
	if len(all) == 0 {
		return fmt.Errorf("no runs")
	}
	base := all[0]
	hdr, sep := "| workload |", "|---|"
	for i, s := range all {
		if i == 0 {
			hdr += fmt.Sprintf(" %s IOPS |", s.label)
			sep += "---:|"
			continue
		}
		hdr += fmt.Sprintf(" %s IOPS | %s / %s |", s.label, s.label, base.label)
		sep += "---:|---:|"
	}
	fmt.Fprintln(w, hdr)
	fmt.Fprintln(w, sep)
	rows := slices.Clone(base.order)
	for _, s := range all[1:] {
		for _, name := range s.order {
			if !slices.Contains(rows, name) {
				rows = append(rows, name)
			}
		}
	}
	for _, name := range rows {
		// A workload measured through another client compares with
		// the ceiling's run of the same shape.
		b := median(base.runs[strings.TrimSuffix(name, libiscsiSuffix)])
		row := fmt.Sprintf("| %s | %.0f |", name, b)
		for _, s := range all[1:] {
			m := median(s.runs[name])
			ratio := "n/a"
			if b > 0 && m > 0 {
				ratio = fmt.Sprintf("%.0f%%", 100*m/b)
			}
			row += fmt.Sprintf(" %.0f | %s |", m, ratio)
		}
		fmt.Fprintln(w, row)
	}
	runs := 0
	for _, rs := range base.runs {
		runs = max(runs, len(rs))
	}
	fmt.Fprintf(w, "\nMedians of %d runs; ratios are IOPS relative to %s.\n", runs, base.label)
	return nil
}

// readLabelled reads a label=run.json[,run.json...] argument: the label
// and each file's results, in order.
func readLabelled(arg string) (string, [][]bench.Result, error) {
	label, files, ok := strings.Cut(arg, "=")
	if !ok || label == "" || files == "" {
		return "", nil, fmt.Errorf("%q is not label=files", arg)
	}
	var runs [][]bench.Result
	for _, f := range strings.Split(files, ",") {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", nil, err
		}
		var rs []bench.Result
		if err := json.Unmarshal(data, &rs); err != nil {
			return "", nil, fmt.Errorf("%s: %w", f, err)
		}
		runs = append(runs, rs)
	}
	return label, runs, nil
}

// median IOPS of the runs (the upper median for an even count).
func median(rs []bench.Result) float64 {
	if len(rs) == 0 {
		return 0
	}
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = r.IOPS
	}
	slices.Sort(v)
	return v[len(v)/2]
}
