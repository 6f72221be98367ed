package paths

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Row is the median of one path and workload over the report's rounds.
type Row struct {
	Path     string `json:"path"`
	Workload string `json:"workload"`
	Runs     int    `json:"runs"`
	// Medians over the successful runs.
	IOPS  float64       `json:"iops"`
	MiBps float64       `json:"mib_per_s"`
	P50   time.Duration `json:"p50_ns"`
	P99   time.Duration `json:"p99_ns"`
	// Amp is the field-wise median amplification (nil: not counted).
	Amp *Amplification `json:"amplification,omitempty"`
	// Error is the first error when no run succeeded.
	Error string `json:"error,omitempty"`
}

// median returns the median of v (the mean of the middle two for an even
// count); 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Summary returns one Row per path and workload, in the report's order.
func (r *Report) Summary() []Row {
	var rows []Row
	for _, p := range r.Paths {
		for _, w := range r.Workloads {
			row := Row{Path: p.Name, Workload: w.Name}
			var ok []Record
			for _, rec := range r.Records {
				if rec.Path != p.Name || rec.Workload != w.Name {
					continue
				}
				if rec.Error != "" {
					if row.Error == "" {
						row.Error = rec.Error
					}
					continue
				}
				ok = append(ok, rec)
			}
			row.Runs = len(ok)
			if len(ok) > 0 {
				row.Error = ""
				f := func(get func(Record) float64) float64 {
					v := make([]float64, len(ok))
					for i, rec := range ok {
						v[i] = get(rec)
					}
					return median(v)
				}
				row.IOPS = f(func(x Record) float64 { return x.IOPS })
				row.MiBps = f(func(x Record) float64 { return x.MiBps })
				row.P50 = time.Duration(f(func(x Record) float64 { return float64(x.P50) }))
				row.P99 = time.Duration(f(func(x Record) float64 { return float64(x.P99) }))
				if ok[0].Amplification != nil {
					a := func(get func(*Amplification) float64) float64 {
						return f(func(x Record) float64 {
							if x.Amplification == nil {
								return 0
							}
							return get(x.Amplification)
						})
					}
					row.Amp = &Amplification{
						SANCmdsPerOp:             a(func(x *Amplification) float64 { return x.SANCmdsPerOp }),
						SANWritesPerWrite:        a(func(x *Amplification) float64 { return x.SANWritesPerWrite }),
						SANBytesPerByte:          a(func(x *Amplification) float64 { return x.SANBytesPerByte }),
						BackendWritesPerWrite:    a(func(x *Amplification) float64 { return x.BackendWritesPerWrite }),
						BackendWriteBytesPerByte: a(func(x *Amplification) float64 { return x.BackendWriteBytesPerByte }),
						BackendReadsPerRead:      a(func(x *Amplification) float64 { return x.BackendReadsPerRead }),
						BackendOpsPerOp:          a(func(x *Amplification) float64 { return x.BackendOpsPerOp }),
					}
				}
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// find returns the row of path and workload.
func find(rows []Row, path, workload string) (Row, bool) {
	for _, r := range rows {
		if r.Path == path && r.Workload == workload {
			return r, true
		}
	}
	return Row{}, false
}

func dur(d time.Duration) string {
	switch {
	case d == 0:
		return "–"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func ratio(v float64) string {
	switch {
	case v == 0:
		return "–"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v < 0.1:
		return fmt.Sprintf("%.3f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func mib(b int64) string {
	if b >= 1<<30 && b%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", b>>30)
	}
	return fmt.Sprintf("%d MiB", b>>20)
}

// Text formats the summary as an aligned plain-text table.
func (r *Report) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-18s %-18s %9s %9s %10s %10s %8s %8s %8s\n",
		"path", "workload", "IOPS", "MiB/s", "p50", "p99", "SAN/op", "bkW/W", "bkB/B")
	for _, row := range r.Summary() {
		if row.Runs == 0 {
			fmt.Fprintf(&b, "%-18s %-18s error: %s\n", row.Path, row.Workload, oneLine(row.Error))
			continue
		}
		san, bw, bb := "–", "–", "–"
		if row.Amp != nil {
			san, bw, bb = ratio(row.Amp.SANCmdsPerOp), ratio(row.Amp.BackendWritesPerWrite), ratio(row.Amp.BackendWriteBytesPerByte)
		}
		fmt.Fprintf(&b, "%-18s %-18s %9.0f %9.1f %10s %10s %8s %8s %8s\n", row.Path, row.Workload,
			row.IOPS, row.MiBps, dur(row.P50), dur(row.P99), san, bw, bb)
	}
	return b.String()
}

// baselineFor is the path each row's IOPS is compared with in Markdown:
// the direct blockmap LUN for everything that rides on blockmap, the raw
// file for the file paths.
func baselineFor(p PathInfo) string {
	switch p.Name {
	case "raw-file", "lunway-file", "tgt-file":
		return "raw-file"
	case "guest-ext4-vmdk", "guest-ext4-qcow2", "guest-raw-lun":
		return "guest-raw-lun"
	case "qemu-qcow2-lun", "qemu-raw-lun":
		return "qemu-raw-lun"
	}
	return "lunway-blockmap"
}

// Markdown formats the report for docs/PERFORMANCE.md: the setup, an
// amplification overview (paths by workloads), and one table per
// workload. chartPrefix, when not empty, is the path prefix of the
// charts written next to the document (iops.svg, amplification.svg).
func (r *Report) Markdown(chartPrefix string) string {
	rows := r.Summary()
	var b strings.Builder
	h := r.Host
	var wd time.Duration
	for _, w := range r.Workloads {
		if !w.OnePass {
			wd = w.Duration
			break
		}
	}
	fmt.Fprintf(&b, "Measured %s on %s (%d cores, %d MiB, %s, work directory on %s); load average %s before, %s after. "+
		"%d rounds; in each, every path first writes the first %s of its disk once (fill-1m-qd4, measured), then runs each workload for %s over it; "+
		"the disks are %s LUNs (images of %s on the datastore LUN). Medians of the rounds.\n\n",
		r.Started.Format("2006-01-02 15:04 UTC"), orDash(h.CPU), h.Cores, h.MemoryMiB, orDash(h.Kernel), orDash(h.Filesystem),
		orDash(h.LoadBefore), orDash(h.LoadAfter), r.Rounds, mib(r.SpanBytes), wd, mib(r.SizeBytes), mib(r.SpanBytes))

	fmt.Fprintf(&b, "| path | kind | layers |\n|---|---|---|\n")
	for _, p := range r.Paths {
		kind := p.Kind
		if p.TCG {
			kind += " (TCG guest)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", p.Name, kind, p.Layers)
	}
	b.WriteString("\n")

	// Overview: SAN commands and backend operations per guest operation.
	b.WriteString("**I/O amplification**: SCSI commands that reached the LUN per guest operation / backend operations " +
		"per guest operation (reads, writes and flushes), from Lunway's counters (`scsi.LU.Stats`, `blockmap.Volume.Stats`; " +
		"a counting wrapper for the plain file backend).\n\n")
	b.WriteString("| path |")
	sep := "|---|"
	for _, w := range r.Workloads {
		fmt.Fprintf(&b, " %s |", w.Name)
		sep += "---:|"
	}
	b.WriteString("\n" + sep + "\n")
	for _, p := range r.Paths {
		if !p.Counted {
			continue
		}
		fmt.Fprintf(&b, "| %s |", p.Name)
		for _, w := range r.Workloads {
			row, _ := find(rows, p.Name, w.Name)
			if row.Runs == 0 || row.Amp == nil {
				b.WriteString(" – |")
				continue
			}
			fmt.Fprintf(&b, " %s / %s |", ratio(row.Amp.SANCmdsPerOp), ratio(row.Amp.BackendOpsPerOp))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	if chartPrefix != "" {
		fmt.Fprintf(&b, "![SCSI commands per guest operation by path](%samplification.svg)\n\n"+
			"![Backend writes per guest write by path](%sbackend-writes.svg)\n\n![IOPS by path and workload](%siops.svg)\n\n",
			chartPrefix, chartPrefix, chartPrefix)
	}

	for _, w := range r.Workloads {
		fmt.Fprintf(&b, "**%s** (%d KiB, queue depth %d", w.Name, w.BlockSize>>10, w.QueueDepth)
		switch {
		case w.ReadPercent == 100:
			b.WriteString(", reads")
		case w.ReadPercent == 0:
			b.WriteString(", writes")
		default:
			fmt.Fprintf(&b, ", %d%% reads", w.ReadPercent)
		}
		if w.Random {
			b.WriteString(", random")
		} else {
			b.WriteString(", sequential")
		}
		if w.FlushEvery > 0 {
			fmt.Fprintf(&b, ", a flush after every %d write(s)", w.FlushEvery)
		}
		if w.RegionBytes > 0 {
			fmt.Fprintf(&b, " in a %s log", mib(w.RegionBytes))
		}
		b.WriteString(")\n\n")
		b.WriteString("| path | runs | IOPS | MiB/s | p50 | p99 | IOPS vs | SAN cmds/op | SAN writes/write | SAN bytes/byte | backend writes/write | backend bytes/byte written | backend reads/read |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|\n")
		for _, p := range r.Paths {
			row, _ := find(rows, p.Name, w.Name)
			if row.Runs == 0 {
				fmt.Fprintf(&b, "| %s | 0 | not run: %s |||||||||||\n", p.Name, oneLine(row.Error))
				continue
			}
			vs := "–"
			if base := baselineFor(p); base != p.Name {
				if br, ok := find(rows, base, w.Name); ok && br.IOPS > 0 {
					vs = fmt.Sprintf("%.2fx %s", row.IOPS/br.IOPS, base)
				}
			}
			fmt.Fprintf(&b, "| %s | %d | %.0f | %.1f | %s | %s | %s |", p.Name, row.Runs, row.IOPS, row.MiBps, dur(row.P50), dur(row.P99), vs)
			if a := row.Amp; a != nil {
				fmt.Fprintf(&b, " %s | %s | %s | %s | %s | %s |\n", ratio(a.SANCmdsPerOp), ratio(a.SANWritesPerWrite), ratio(a.SANBytesPerByte),
					ratio(a.BackendWritesPerWrite), ratio(a.BackendWriteBytesPerByte), ratio(a.BackendReadsPerRead))
			} else {
				b.WriteString(" – | – | – | – | – | – |\n")
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// oneLine keeps an error message fit for a table cell.
func oneLine(s string) string {
	s = strings.NewReplacer("\n", " ", "|", "/").Replace(s)
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// Charts returns the report's charts as SVG documents: IOPS by workload
// and path (log scale); SCSI commands at the LUN per guest operation by
// workload and counted path; and backend write operations per guest write
// for the workloads that write (log scale).
func (r *Report) Charts() (iops, amp, backend []byte) {
	rows := r.Summary()
	var groups, writeGroups []string
	for _, w := range r.Workloads {
		groups = append(groups, w.Name)
		if w.ReadPercent < 100 {
			writeGroups = append(writeGroups, w.Name)
		}
	}
	ic := Chart{Title: "IOPS by workload and path (median, log scale)", Unit: "IOPS", Log: true, Groups: groups}
	ac := Chart{Title: "SCSI commands at the LUN per guest operation (median)", Unit: "commands per guest op", Groups: groups}
	bc := Chart{Title: "Backend write operations per guest write (median, log scale)", Unit: "backend writes per guest write", Log: true, Groups: writeGroups}
	for _, p := range r.Paths {
		ic.Series = append(ic.Series, p.Name)
		if p.Counted {
			ac.Series = append(ac.Series, p.Name)
			bc.Series = append(bc.Series, p.Name)
		}
	}
	for _, w := range r.Workloads {
		var iv, av, bv []float64
		for _, p := range r.Paths {
			row, _ := find(rows, p.Name, w.Name)
			v := math.NaN()
			if row.Runs > 0 {
				v = row.IOPS
			}
			iv = append(iv, v)
			if p.Counted {
				a, b := math.NaN(), math.NaN()
				if row.Runs > 0 && row.Amp != nil {
					a, b = row.Amp.SANCmdsPerOp, row.Amp.BackendWritesPerWrite
				}
				av, bv = append(av, a), append(bv, b)
			}
		}
		ic.Values = append(ic.Values, iv)
		ac.Values = append(ac.Values, av)
		if w.ReadPercent < 100 {
			bc.Values = append(bc.Values, bv)
		}
	}
	return ic.SVG(), ac.SVG(), bc.SVG()
}
