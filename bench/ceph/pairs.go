package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/lunway/lunway/bench"
)

// pairs reports runs made in pairs: the Nth file of every label was
// measured right next to the Nth file of the first label (the ceiling),
// so each pair gives a ratio that the cluster's drift between pairs does
// not move, and the table shows every pair's ratio and their median.
//
//	ceph pairs librbd=a1.json,a2.json lunway-rbd=b1.json,b2.json ...
//
// A workload measured through another client (libiscsi) compares with
// the ceiling's workload of the same shape, as in report.
func pairs(w io.Writer, args []string) error {
	type labelled struct {
		label string
		runs  [][]bench.Result // per pair
	}
	var all []labelled
	for _, arg := range args {
		label, runs, err := readLabelled(arg)
		if err != nil {
			return err
		}
		all = append(all, labelled{label: label, runs: runs})
	}
	if len(all) < 2 {
		return fmt.Errorf("pairs needs the ceiling and at least one more label")
	}
	base := all[0]
	for _, l := range all[1:] {
		if len(l.runs) != len(base.runs) {
			return fmt.Errorf("%s has %d runs, %s %d: runs must pair up", l.label, len(l.runs), base.label, len(base.runs))
		}
	}
	find := func(rs []bench.Result, name string) (float64, bool) {
		for _, r := range rs {
			if r.Workload == name && r.IOPS > 0 {
				return r.IOPS, true
			}
		}
		return 0, false
	}
	fmt.Fprintf(w, "| label | workload | %s IOPS per pair | IOPS per pair | ratio per pair | median ratio |\n", base.label)
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|")
	rows := 0
	for _, l := range all[1:] {
		var order []string
		for _, rs := range l.runs {
			for _, r := range rs {
				if !slices.Contains(order, r.Workload) {
					order = append(order, r.Workload)
				}
			}
		}
		for _, name := range order {
			var bs, ms, ratios []string
			var rv []float64
			for i, rs := range l.runs {
				m, ok1 := find(rs, name)
				b, ok2 := find(base.runs[i], strings.TrimSuffix(name, libiscsiSuffix))
				if !ok1 || !ok2 {
					continue // a failed run of either side: no pair
				}
				bs = append(bs, fmt.Sprintf("%.0f", b))
				ms = append(ms, fmt.Sprintf("%.0f", m))
				ratios = append(ratios, fmt.Sprintf("%.0f%%", 100*m/b))
				rv = append(rv, m/b)
			}
			if len(rv) == 0 {
				continue
			}
			slices.Sort(rv)
			// The lower median for an even count: a pair's ratio, never an
			// average of two.
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | **%.0f%%** |\n", l.label, name,
				strings.Join(bs, ", "), strings.Join(ms, ", "), strings.Join(ratios, ", "), 100*rv[(len(rv)-1)/2])
			rows++
		}
	}
	if rows == 0 {
		return fmt.Errorf("no workload was measured by both sides of any pair")
	}
	return nil
}
