package transfer

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// Bar draws a one-line terminal progress bar for Options.Progress:
//
//	import disk.qcow2  [=========>          ]  48%  1.9/4.0 GiB  210 MiB/s  data 512 MiB  ETA 0:10
//
// It redraws the line in place with a carriage return. It is quiet (draws
// nothing at all) when its output is not a terminal, so scripts and logs
// stay clean.
type Bar struct {
	w     io.Writer
	tty   bool
	label string
	width func() int
	mu    sync.Mutex
	last  int // length of the last line drawn
}

// NewBar returns a bar drawing on f (usually os.Stderr or os.Stdout),
// active only when f is a terminal.
func NewBar(f *os.File, label string) *Bar {
	fd := int(f.Fd())
	return &Bar{w: f, tty: term.IsTerminal(fd), label: label, width: func() int {
		if w, _, err := term.GetSize(fd); err == nil && w > 20 {
			return w
		}
		return 80
	}}
}

// NewBarWriter returns a bar drawing on w as if it were a terminal of
// the given width when tty is set (for tests and custom outputs).
func NewBarWriter(w io.Writer, tty bool, width int, label string) *Bar {
	return &Bar{w: w, tty: tty, label: label, width: func() int { return width }}
}

// Update redraws the bar; use it as Options.Progress.
func (b *Bar) Update(p Progress) {
	if !b.tty {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	line := b.render(p, b.width()-1)
	pad := max(0, b.last-len(line))
	fmt.Fprintf(b.w, "\r%s%s", line, strings.Repeat(" ", pad))
	b.last = len(line)
}

// Finish draws the final state and ends the line.
func (b *Bar) Finish(p Progress) {
	if !b.tty {
		return
	}
	b.Update(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	fmt.Fprintln(b.w)
	b.last = 0
}

func (b *Bar) render(p Progress, width int) string {
	frac := 1.0
	if p.Total > 0 {
		frac = float64(p.Done) / float64(p.Total)
	}
	stats := fmt.Sprintf(" %3.0f%%  %s/%s  %s/s  data %s", frac*100, Bytes(p.Done), Bytes(p.Total), Bytes(int64(p.Rate())), Bytes(p.Data))
	if p.Done < p.Total {
		stats += "  ETA " + clock(p.ETA())
	} else {
		stats += "  in " + clock(p.Elapsed)
	}
	barWidth := width - len(b.label) - len(stats) - 4
	if barWidth < 10 {
		return b.label + stats
	}
	fill := int(frac * float64(barWidth))
	bar := strings.Repeat("=", fill)
	if fill < barWidth {
		bar += ">" + strings.Repeat(" ", barWidth-fill-1)
	}
	return b.label + " [" + bar + "]" + stats
}

// Bytes formats n in binary units ("1.5 GiB").
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// clock formats d as h:mm:ss or m:ss.
func clock(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}
