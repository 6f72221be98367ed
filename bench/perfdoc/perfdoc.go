package perfdoc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Errors of Replace and ParseGoBench.
var (
	// ErrMarkers reports missing, repeated or unordered section markers.
	ErrMarkers = errors.New("perfdoc: bad section markers")
	// ErrName reports a section name that cannot be used in a marker.
	ErrName = errors.New("perfdoc: bad section name")
)

// Begin and End return the marker lines of section name.
func Begin(name string) string { return "<!-- BEGIN GENERATED " + name + " -->" }

// End returns the closing marker of section name.
func End(name string) string { return "<!-- END GENERATED " + name + " -->" }

// maxDoc caps the document and a section (bytes).
const maxDoc = 16 << 20

func validName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Replace returns doc with the body of section name replaced by body (a
// trailing newline is added when missing). The markers must each appear
// exactly once, on lines of their own, begin before end.
func Replace(doc []byte, name string, body []byte) ([]byte, error) {
	if !validName(name) {
		return nil, fmt.Errorf("%w: %q", ErrName, name)
	}
	if len(doc) > maxDoc || len(body) > maxDoc {
		return nil, fmt.Errorf("perfdoc: document or section over %d bytes", maxDoc)
	}
	b, e := []byte(Begin(name)), []byte(End(name))
	if bytes.Count(doc, b) != 1 || bytes.Count(doc, e) != 1 {
		return nil, fmt.Errorf("%w: section %q needs exactly one %s and one %s", ErrMarkers, name, b, e)
	}
	bi, ei := bytes.Index(doc, b), bytes.Index(doc, e)
	if ei < bi {
		return nil, fmt.Errorf("%w: section %q ends before it begins", ErrMarkers, name)
	}
	start := bi + len(b)
	if start >= len(doc) || doc[start] != '\n' || (ei > 0 && doc[ei-1] != '\n') {
		return nil, fmt.Errorf("%w: section %q markers must be on lines of their own", ErrMarkers, name)
	}
	out := make([]byte, 0, len(doc)+len(body))
	out = append(out, doc[:start+1]...)
	out = append(out, body...)
	if len(body) > 0 && body[len(body)-1] != '\n' {
		out = append(out, '\n')
	}
	out = append(out, doc[ei:]...)
	return out, nil
}

// Sections lists the names of the generated sections of doc, in order.
func Sections(doc []byte) []string {
	var names []string
	const pre, post = "<!-- BEGIN GENERATED ", " -->"
	for _, line := range strings.Split(string(doc), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, pre) && strings.HasSuffix(line, post) && len(line) >= len(pre)+len(post) {
			names = append(names, line[len(pre):len(line)-len(post)])
		}
	}
	return names
}

// Bench is one `go test -bench` result line.
type Bench struct {
	Name  string             // without the -GOMAXPROCS suffix
	N     int64              // iterations
	Units map[string]float64 // ns/op, MB/s, B/op, allocs/op, custom units
}

// ParseGoBench reads `go test -bench` output and returns the result lines
// (others are ignored). Lines are capped at 64 KiB.
func ParseGoBench(r io.Reader) ([]Bench, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	var out []Bench
	for sc.Scan() {
		if b, ok := parseBenchLine(sc.Text()); ok {
			out = append(out, b)
		}
	}
	return out, sc.Err()
}

func parseBenchLine(line string) (Bench, bool) {
	f := strings.Fields(line)
	if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
		return Bench{}, false
	}
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || n <= 0 {
		return Bench{}, false
	}
	name := f[0]
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			name = name[:i]
		}
	}
	b := Bench{Name: name, N: n, Units: map[string]float64{}}
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return Bench{}, false
		}
		b.Units[f[i+1]] = v
	}
	return b, true
}

// GoBenchTable returns a Markdown table of the median of every unit of
// every benchmark over its runs, in first-seen order; units are columns in
// a fixed order (ns/op, MB/s, B/op, allocs/op, then others sorted).
func GoBenchTable(bs []Bench) string {
	var order []string
	runs := map[string][]Bench{}
	unitSet := map[string]bool{}
	for _, b := range bs {
		if _, ok := runs[b.Name]; !ok {
			order = append(order, b.Name)
		}
		runs[b.Name] = append(runs[b.Name], b)
		for u := range b.Units {
			unitSet[u] = true
		}
	}
	var units []string
	for _, u := range []string{"ns/op", "MB/s", "B/op", "allocs/op"} {
		if unitSet[u] {
			units = append(units, u)
			delete(unitSet, u)
		}
	}
	var rest []string
	for u := range unitSet {
		rest = append(rest, u)
	}
	slices.Sort(rest)
	units = append(units, rest...)
	var sb strings.Builder
	sb.WriteString("| benchmark | runs |")
	sep := "|---|---:|"
	for _, u := range units {
		sb.WriteString(" " + u + " |")
		sep += "---:|"
	}
	sb.WriteString("\n" + sep + "\n")
	for _, name := range order {
		rs := runs[name]
		fmt.Fprintf(&sb, "| %s | %d |", strings.TrimPrefix(name, "Benchmark"), len(rs))
		for _, u := range units {
			var v []float64
			for _, r := range rs {
				if x, ok := r.Units[u]; ok {
					v = append(v, x)
				}
			}
			if len(v) == 0 {
				sb.WriteString(" – |")
				continue
			}
			fmt.Fprintf(&sb, " %s |", format(median(v)))
		}
		sb.WriteString("\n")
	}
	return sb.String()
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func format(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// RatioTable compares every benchmark with its baseline: the benchmark
// whose name has base as its first element and the same rest
// (Volume/op=randwrite against FileBaseline/op=randwrite). Each row is the
// ratio of the medians of unit (higher-is-better units such as IOPS or
// MB/s read as "times the baseline"). Benchmarks without a baseline are
// left out; an empty string means there was nothing to compare.
func RatioTable(bs []Bench, base, unit string) string {
	med := map[string]float64{}
	var order []string
	vals := map[string][]float64{}
	for _, b := range bs {
		v, ok := b.Units[unit]
		if !ok {
			continue
		}
		if _, seen := vals[b.Name]; !seen {
			order = append(order, b.Name)
		}
		vals[b.Name] = append(vals[b.Name], v)
	}
	for name, v := range vals {
		med[name] = median(v)
	}
	split := func(name string) (string, string) {
		first, rest, _ := strings.Cut(strings.TrimPrefix(name, "Benchmark"), "/")
		return first, rest
	}
	var sb strings.Builder
	rows := 0
	for _, name := range order {
		first, rest := split(name)
		if first == base {
			continue
		}
		bv, ok := med["Benchmark"+base+"/"+rest]
		if !ok || bv == 0 {
			continue
		}
		if rows == 0 {
			fmt.Fprintf(&sb, "| benchmark | %s | %s %s | ratio |\n|---|---:|---:|---:|\n", unit, base, unit)
		}
		rows++
		fmt.Fprintf(&sb, "| %s/%s | %s | %s | %.2fx |\n", first, rest, format(med[name]), format(bv), med[name]/bv)
	}
	return sb.String()
}
