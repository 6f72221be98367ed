package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lunway/lunway/bench"
	"github.com/lunway/lunway/bench/paths"
	"github.com/lunway/lunway/cmd/lunway/internal/config"
	"github.com/spf13/cobra"
)

func newBenchCmd() *cobra.Command {
	var (
		duration time.Duration
		only     string
		span     string
		output   string
		prefill  bool
	)
	cmd := &cobra.Command{
		Use:   "bench ISCSI-URL",
		Short: "Measure I/O workloads against any iSCSI LUN (Lunway or another target)",
		Long: `Measure I/O workloads against any iSCSI LUN, Lunway's or another target's:
4 KiB random read and write at queue depth 1 and 32, and 1 MiB sequential read
and write at queue depth 8, reporting IOPS, MiB/s and latency percentiles.

The URL is iscsi://[user%secret@]host[:port]/target-iqn/lun. WRITE WORKLOADS
OVERWRITE THE LUN. --prefill first writes the measured span once, so that reads
hit allocated data rather than holes.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tg, err := bench.ParseURL(args[0])
			if err != nil {
				return usageError{err}
			}
			ctx := cmd.Context()
			s, err := bench.Dial(ctx, tg)
			if err != nil {
				return fmt.Errorf("login to %s: %w", args[0], err)
			}
			defer s.Close()
			var spanBytes int64
			if span != "" {
				v, err := parseSizeFlag(span)
				if err != nil {
					return usageError{fmt.Errorf("--span: %w", err)}
				}
				spanBytes = v
			}
			if prefill {
				w := bench.Workload{Name: "prefill", BlockSize: 1 << 20, QueueDepth: 8, SpanBytes: spanBytes}
				if err := bench.Fill(ctx, s, tg.LUN, w); err != nil {
					return err
				}
			}
			var results []bench.Result
			for _, w := range bench.Standard(duration) {
				if only != "" && !matchAny(w.Name, strings.Split(only, ",")) {
					continue
				}
				w.SpanBytes = spanBytes
				r, err := bench.Run(ctx, s, tg.LUN, w)
				if err != nil {
					return err
				}
				results = append(results, r)
			}
			if output == "json" {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(results)
			}
			fmt.Print(bench.Table(results))
			return nil
		},
	}
	cmd.Flags().DurationVar(&duration, "duration", 10*time.Second, "measured time per workload")
	cmd.Flags().StringVar(&only, "workloads", "", "comma-separated workload names or prefixes (default: all)")
	cmd.Flags().StringVar(&span, "span", "", "limit I/O to the first SIZE of the LUN (e.g. 1GiB)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	cmd.Flags().BoolVar(&prefill, "prefill", false, "write the span once before measuring")
	cmd.AddCommand(newBenchPathsCmd())
	return cmd
}

func newBenchPathsCmd() *cobra.Command {
	var (
		duration          time.Duration
		only, pathList    string
		size, span        string
		rounds            int
		workDir, guestDir string
		outDir, output    string
		chartPrefix, from string
		keep              bool
	)
	cmd := &cobra.Command{
		Use:   "paths",
		Short: "Compare I/O paths: direct LUN, VMDK/qcow2 on a filesystem on a LUN, tgt, the raw backing",
		Long: `Run one set of workloads through several I/O paths in one run and compare them:
the backing file directly, Lunway over a file and over a blockmap volume, tgt
over the same file, QEMU's raw/VMDK/qcow2 drivers on a Lunway LUN, and the same
images as files on ext4 inside a small emulated guest whose disk is a Lunway LUN.
For every path it reports IOPS, MiB/s, p50/p99 latency and, from Lunway's own
counters, the SCSI commands and backend operations per guest operation.

Lunway runs in-process on 127.0.0.1; tgtd, qemu-nbd and qemu-system-x86_64 are
started and stopped by the command. The guest's kernel and initramfs come from
bench/paths/guest/build.sh (--guest-dir). --out writes report.json, report.md,
iops.svg, amplification.svg and backend-writes.svg. --from re-renders an earlier
report.json without measuring.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("bench paths takes no arguments, got %q", args)}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from != "" {
				// Render a saved report again (new tables, charts).
				data, err := os.ReadFile(from)
				if err != nil {
					return err
				}
				var rep paths.Report
				if err := json.Unmarshal(data, &rep); err != nil {
					return usageError{fmt.Errorf("--from %s: %w", from, err)}
				}
				return showPathsReport(&rep, outDir, chartPrefix, output)
			}
			cfg := paths.Config{Rounds: rounds, GuestDir: guestDir, KeepWork: keep, Progress: os.Stderr}
			var err error
			if cfg.SizeBytes, err = parseSizeFlag(size); err != nil {
				return usageError{fmt.Errorf("--size: %w", err)}
			}
			if cfg.SpanBytes, err = parseSizeFlag(span); err != nil {
				return usageError{fmt.Errorf("--span: %w", err)}
			}
			if pathList != "" {
				cfg.Paths = splitList(pathList)
			}
			for _, w := range paths.Standard(duration) {
				if only == "" || matchAny(w.Name, strings.Split(only, ",")) {
					cfg.Workloads = append(cfg.Workloads, w)
				}
			}
			if len(cfg.Workloads) == 0 {
				return usageError{fmt.Errorf("--workloads %q matches no workload", only)}
			}
			if workDir == "" {
				d, err := os.MkdirTemp("", "lunway-bench-paths-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(d)
				workDir = d
			}
			cfg.WorkDir = workDir
			rep, err := paths.RunAll(cmd.Context(), cfg)
			if errors.Is(err, paths.ErrConfig) || errors.Is(err, paths.ErrWorkload) {
				return usageError{err}
			}
			if rep != nil {
				err = errors.Join(err, showPathsReport(rep, outDir, chartPrefix, output))
			}
			return err
		},
	}
	f := cmd.Flags()
	f.DurationVar(&duration, "duration", 5*time.Second, "measured time per workload")
	f.StringVar(&only, "workloads", "", "comma-separated workload names or prefixes (default: all)")
	f.StringVar(&pathList, "paths", "", "comma-separated paths (default: all): "+strings.Join(pathNames(), ","))
	f.IntVar(&rounds, "rounds", 3, "rounds of every path and workload (the report takes medians)")
	f.StringVar(&size, "size", "1GiB", "size of every LUN and of the backing file")
	f.StringVar(&span, "span", "256MiB", "part of each (virtual) disk the workloads touch (at most half the size)")
	f.StringVar(&workDir, "work-dir", "", "directory for the LUNs, files and logs (default: a temporary directory)")
	f.StringVar(&guestDir, "guest-dir", defaultGuestDir(), "kernel and initramfs of the guest (bench/paths/guest/build.sh)")
	f.StringVar(&outDir, "out", "", "write report.json, report.md and the SVG charts here")
	f.StringVarP(&output, "output", "o", "table", "table, markdown or json")
	f.StringVar(&chartPrefix, "chart-prefix", "", "path prefix of the charts as report.md links them (e.g. perf/paths-)")
	f.StringVar(&from, "from", "", "do not measure: render the report.json of an earlier run")
	f.BoolVar(&keep, "keep", false, "keep each round's work directory (logs, images)")
	return cmd
}

func pathNames() []string {
	var names []string
	for _, p := range paths.Paths() {
		names = append(names, p.Name)
	}
	return names
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func defaultGuestDir() string {
	if d := os.Getenv("LUNWAY_BENCH_CACHE"); d != "" {
		return filepath.Join(d, "guest")
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "lunway-bench", "guest")
	}
	return filepath.Join(os.TempDir(), "lunway-bench", "guest")
}

// showPathsReport writes the report's files to outDir (when set) and
// prints it as output says.
func showPathsReport(rep *paths.Report, outDir, chartPrefix, output string) error {
	var err error
	if outDir != "" {
		err = writePathsReport(outDir, rep, chartPrefix)
	}
	switch output {
	case "json":
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		err = errors.Join(err, enc.Encode(rep))
	case "markdown":
		fmt.Print(rep.Markdown(chartPrefix))
	default:
		fmt.Print(rep.Text())
	}
	return err
}

// writePathsReport writes the report's JSON, Markdown and charts to dir.
func writePathsReport(dir string, rep *paths.Report, chartPrefix string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	iops, amp, backend := rep.Charts()
	return errors.Join(
		os.WriteFile(filepath.Join(dir, "report.json"), append(js, '\n'), 0o644),
		os.WriteFile(filepath.Join(dir, "report.md"), []byte(rep.Markdown(chartPrefix)), 0o644),
		os.WriteFile(filepath.Join(dir, "iops.svg"), iops, 0o644),
		os.WriteFile(filepath.Join(dir, "amplification.svg"), amp, 0o644),
		os.WriteFile(filepath.Join(dir, "backend-writes.svg"), backend, 0o644),
	)
}

func matchAny(name string, prefixes []string) bool {
	for _, p := range prefixes {
		if p = strings.TrimSpace(p); p != "" && strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// parseSizeFlag parses a byte count flag such as 1GiB or 4096.
func parseSizeFlag(s string) (int64, error) {
	v, err := config.ParseSize(s)
	return int64(v), err
}
