package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lunway/lunway/bench"
)

// libiscsiSuffix marks the workloads measured through libiscsi; report
// compares them with the ceiling's workload of the same name without it.
const libiscsiSuffix = " (libiscsi)"

// libiscsi measures 4 KiB random reads through iscsi-perf, libiscsi's
// benchmark (libiscsi is the initiator QEMU and Proxmox use), at each
// queue depth, and prints the results as JSON like `librbd`.
func libiscsi(args []string) error {
	fs := flag.NewFlagSet("libiscsi", flag.ExitOnError)
	url := fs.String("url", "", "iscsi://HOST:PORT/IQN/LUN")
	duration := fs.Duration("duration", 10*time.Second, "how long each queue depth runs (whole seconds)")
	depths := fs.String("qd", "1,32", "comma-separated queue depths")
	fs.Parse(args)
	t, err := bench.ParseURL(*url)
	if err != nil {
		return err
	}
	secs := int64(*duration / time.Second)
	if secs < 1 {
		return fmt.Errorf("-duration %v: at least 1s", *duration)
	}
	// iscsi-perf counts in the LUN's blocks: ask for the block size.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := bench.Dial(ctx, t)
	if err != nil {
		return err
	}
	c, err := s.ReadCapacity16(ctx, t.LUN)
	s.Close()
	if err != nil {
		return err
	}
	if c.BlockSize == 0 || 4096%c.BlockSize != 0 {
		return fmt.Errorf("LUN block size %d does not divide 4 KiB", c.BlockSize)
	}
	blocks := 4096 / c.BlockSize
	var results []bench.Result
	for _, f := range strings.Split(*depths, ",") {
		qd, err := strconv.Atoi(f)
		if err != nil || qd < 1 {
			return fmt.Errorf("-qd %q: not a queue depth", f)
		}
		iops, err := iscsiPerf(*url, qd, int(blocks), secs)
		if err != nil {
			return fmt.Errorf("queue depth %d: %w", qd, err)
		}
		name := fmt.Sprintf("randread-4k-qd%d%s", qd, libiscsiSuffix)
		fmt.Fprintf(os.Stderr, "iscsi-perf %s: %d IOPS\n", name, iops)
		results = append(results, bench.Result{
			Workload: name, Ops: iops * secs, Bytes: iops * secs * 4096,
			Elapsed: time.Duration(secs) * time.Second, IOPS: float64(iops),
			MiBps: float64(iops) * 4096 / (1 << 20), QueueDepth: qd, BlockSize: 4096,
		})
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(results)
}

// iscsiPerf runs `iscsi-perf -r` for secs seconds and returns the average
// IOPS it reports at the end.
func iscsiPerf(url string, qd, blocks int, secs int64) (int64, error) {
	// iscsi-perf stops itself after -t seconds; SIGINT (its own way to
	// stop, printing the average) backs that up should its once-a-second
	// check step over the last second.
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+5)*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "iscsi-perf", "-r", "-m", strconv.Itoa(qd), "-b", strconv.Itoa(blocks),
		"-t", strconv.FormatInt(secs, 10), url)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	iops, ok := parseIscsiPerf(out.String())
	if !ok {
		return 0, fmt.Errorf("iscsi-perf: no average (%v): %s", err, tail(out.String(), 300))
	}
	return iops, nil
}

// parseIscsiPerf returns the last "iops average N" of iscsi-perf's
// output (progress lines end in carriage returns, not newlines).
func parseIscsiPerf(out string) (int64, bool) {
	const key = "iops average "
	i := strings.LastIndex(out, key)
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(out[i+len(key):])
	if len(f) == 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || n <= 0 || n > maxField {
		return 0, false
	}
	return n, true
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
