// Command benchreport aggregates `lunway bench -o json` runs: for each label
// it takes the median of every workload over its runs, and prints a
// Markdown table with the ratio of the first label to each other one.
//
//	benchreport lunway=run1.json,run2.json,run3.json tgt=a.json,b.json,c.json
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/lunway/lunway/bench"
)

type series struct {
	label   string
	results map[string][]bench.Result // workload → runs
	order   []string
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchreport label=run.json[,run.json...] ...")
		os.Exit(2)
	}
	var all []*series
	for _, arg := range os.Args[1:] {
		label, files, ok := strings.Cut(arg, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "benchreport: %q is not label=files\n", arg)
			os.Exit(2)
		}
		s := &series{label: label, results: map[string][]bench.Result{}}
		for _, f := range strings.Split(files, ",") {
			data, err := os.ReadFile(f)
			if err != nil {
				fmt.Fprintln(os.Stderr, "benchreport:", err)
				os.Exit(1)
			}
			var rs []bench.Result
			if err := json.Unmarshal(data, &rs); err != nil {
				fmt.Fprintf(os.Stderr, "benchreport: %s: %v\n", f, err)
				os.Exit(1)
			}
			for _, r := range rs {
				if _, ok := s.results[r.Workload]; !ok {
					s.order = append(s.order, r.Workload)
				}
				s.results[r.Workload] = append(s.results[r.Workload], r)
			}
		}
		all = append(all, s)
	}
	base := all[0]
	hdr := "| workload | runs |"
	sep := "|---|---|"
	for _, s := range all {
		hdr += fmt.Sprintf(" %s IOPS | %s MiB/s | %s p50 / p99 |", s.label, s.label, s.label)
		sep += "---:|---:|---:|"
	}
	for _, s := range all[1:] {
		hdr += fmt.Sprintf(" %s / %s |", base.label, s.label)
		sep += "---:|"
	}
	fmt.Println(hdr)
	fmt.Println(sep)
	for _, w := range base.order {
		row := fmt.Sprintf("| %s | %d |", w, len(base.results[w]))
		med := make([]bench.Result, len(all))
		for i, s := range all {
			med[i] = median(s.results[w])
			row += fmt.Sprintf(" %.0f | %.1f | %s / %s |", med[i].IOPS, med[i].MiBps,
				med[i].P50.Round(time.Microsecond), med[i].P99.Round(time.Microsecond))
		}
		for i := range all[1:] {
			if med[i+1].IOPS > 0 {
				row += fmt.Sprintf(" %.2fx |", med[0].IOPS/med[i+1].IOPS)
			} else {
				row += " n/a |"
			}
		}
		fmt.Println(row)
	}
}

// median returns the run with the median IOPS, and the median latencies.
func median(rs []bench.Result) bench.Result {
	if len(rs) == 0 {
		return bench.Result{}
	}
	by := func(f func(bench.Result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return bench.Result{
		Workload: rs[0].Workload,
		IOPS:     by(func(r bench.Result) float64 { return r.IOPS }),
		MiBps:    by(func(r bench.Result) float64 { return r.MiBps }),
		P50:      time.Duration(by(func(r bench.Result) float64 { return float64(r.P50) })),
		P99:      time.Duration(by(func(r bench.Result) float64 { return float64(r.P99) })),
	}
}
