package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/lunway/lunway/bench"
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
	return cmd
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
