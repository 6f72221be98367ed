package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lunway/lunway/bench"
)

var progressTests = []struct {
	line string
	want progress
	ok   bool
}{
	{"    4      3992   968.992   3.8 MiB/s", progress{4, 3992}, true},
	{"    1      1592    1587.3   6.2 MiB/s", progress{1, 1592}, true},
	{"   12    262144   25866.4   101 MiB/s", progress{12, 262144}, true},
	{"  SEC       OPS   OPS/SEC   BYTES/SEC", progress{}, false},
	{"bench  type write io_size 4096 io_threads 8 bytes 16777216 pattern random", progress{}, false},
	{"elapsed: 4   ops: 4096   ops/sec: 856.187   bytes/sec: 3.3 MiB/s", progress{}, false},
	{"", progress{}, false},
	{"    0      0   0   0 B/s", progress{}, false},
	{"   -1     10   1.0   1 B/s", progress{}, false},
	{"    1     -5   1.0   1 B/s", progress{}, false},
	{"    1     99999999999999999999   1.0   1 B/s", progress{}, false},
	{"    1      5   NaN   1 B/s", progress{}, false},
}

func TestParseProgress(t *testing.T) {
	for _, tt := range progressTests {
		got, ok := parseProgress(tt.line)
		if ok != tt.ok || got != tt.want {
			t.Errorf("parseProgress(%q) = %+v, %v; want %+v, %v", tt.line, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzParseProgress(f *testing.F) {
	for _, tt := range progressTests {
		f.Add(tt.line)
	}
	f.Fuzz(func(t *testing.T, line string) {
		p, ok := parseProgress(line)
		if ok && (p.sec <= 0 || p.ops < 0 || p.sec > maxField || p.ops > maxField) {
			t.Fatalf("parseProgress(%q) = %+v accepted out of range", line, p)
		}
		if !ok && p != (progress{}) {
			t.Fatalf("parseProgress(%q) rejected but returned %+v", line, p)
		}
	})
}

var iscsiPerfTests = []struct {
	out  string
	want int64
	ok   bool
}{
	{"connected to iscsi://x\ncapacity is 2097152 blocks\n\n\r00:00:01 - lba 5, iops current 9000 (35 MB/s), iops average 9000 (35 MB/s)         " +
		"\r00:00:00 - lba 7, iops current 9800 (38 MB/s), iops average 9412 (36 MB/s)         " +
		"\riops average 9415 (36 MB/s)                  \n\nfinished.\n", 9415, true},
	{"\r00:00:01 - lba 5, iops current 9000 (35 MB/s), iops average 8999 (35 MB/s)   ", 8999, true},
	{"Login Failed. connection refused\n", 0, false},
	{"iops average ", 0, false},
	{"iops average x (1 MB/s)", 0, false},
	{"iops average 0 (0 MB/s)", 0, false},
	{"iops average 99999999999999999999 (0 MB/s)", 0, false},
}

func TestParseIscsiPerf(t *testing.T) {
	for _, tt := range iscsiPerfTests {
		got, ok := parseIscsiPerf(tt.out)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseIscsiPerf(%q) = %d, %v; want %d, %v", tt.out, got, ok, tt.want, tt.ok)
		}
	}
}

// TestReport: medians per label, ratios to the first label, and a
// workload measured through libiscsi compared with the ceiling's
// workload of the same shape.
// runWriter returns a function that writes results as a run file of a
// temporary directory and returns its path.
func runWriter(t *testing.T) func(name string, rs ...bench.Result) string {
	dir := t.TempDir()
	return func(name string, rs ...bench.Result) string {
		b, err := json.Marshal(rs)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
}

func TestReport(t *testing.T) {
	write := runWriter(t)
	r := func(w string, iops float64) bench.Result { return bench.Result{Workload: w, IOPS: iops} }
	base1 := write("b1", r("randread-4k-qd32", 1000), r("randwrite-4k-qd32", 500))
	base2 := write("b2", r("randread-4k-qd32", 2000), r("randwrite-4k-qd32", 400))
	base3 := write("b3", r("randread-4k-qd32", 1200), r("randwrite-4k-qd32", 600))
	lun := write("l1", r("randread-4k-qd32", 600), r("randwrite-4k-qd32", 450))
	lib := write("l2", r("randread-4k-qd32"+libiscsiSuffix, 900))
	var out strings.Builder
	if err := report(&out, []string{"librbd=" + base1 + "," + base2 + "," + base3, "lun=" + lun, "lib=" + lib}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| randread-4k-qd32 | 1200 | 600 | 50% | 0 | n/a |",
		"| randwrite-4k-qd32 | 500 | 450 | 90% | 0 | n/a |",
		"| randread-4k-qd32 (libiscsi) | 1200 | 0 | n/a | 900 | 75% |",
		"Medians of 3 runs",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	if err := report(&out, []string{"nolabel"}); err == nil {
		t.Error("report accepted an argument without label=")
	}
}

func TestPairs(t *testing.T) {
	write := runWriter(t)
	r := func(w string, iops float64) bench.Result { return bench.Result{Workload: w, IOPS: iops} }
	const w = "randread-4k-qd32"
	// The ceiling drifts from 1000 to 2000 between pairs; the LUN keeps
	// 70 %, 80 % and 75 % of its neighbour. The report's ratio of medians
	// would say 1400/1500 = 93 %.
	base := []string{write("b1", r(w, 1000)), write("b2", r(w, 2000)), write("b3", r(w, 1500))}
	lun := []string{write("l1", r(w, 700)), write("l2", r(w, 1600)), write("l3", r(w, 1125))}
	lib := []string{write("i1", r(w+libiscsiSuffix, 900)), write("i2", bench.Result{Workload: w + libiscsiSuffix}), write("i3", r(w+libiscsiSuffix, 1200))}
	var out strings.Builder
	if err := pairs(&out, []string{"librbd=" + strings.Join(base, ","), "lun=" + strings.Join(lun, ","), "lib=" + strings.Join(lib, ",")}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| lun | randread-4k-qd32 | 1000, 2000, 1500 | 700, 1600, 1125 | 70%, 80%, 75% | **75%** |",
		// A failed run (0 IOPS) makes no pair; of two, the lower median.
		"| lib | randread-4k-qd32 (libiscsi) | 1000, 1500 | 900, 1200 | 90%, 80% | **80%** |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("pairs lacks %q:\n%s", want, out.String())
		}
	}
	for _, bad := range [][]string{
		{"librbd=" + base[0]},
		{"librbd=" + strings.Join(base, ","), "lun=" + lun[0]},
		{"nolabel", "lun=" + lun[0]},
		{"librbd=" + base[0], "lun=" + write("other", r("randwrite-4k-qd1", 5))},
	} {
		if err := pairs(io.Discard, bad); err == nil {
			t.Errorf("pairs(%q) succeeded", bad)
		}
	}
}

// FuzzParseIscsiPerf: whatever iscsi-perf prints, the parser accepts only
// a positive, bounded average, and the last one printed.
func FuzzParseIscsiPerf(f *testing.F) {
	for _, tt := range iscsiPerfTests {
		f.Add(tt.out)
	}
	f.Fuzz(func(t *testing.T, out string) {
		n, ok := parseIscsiPerf(out)
		if ok && (n <= 0 || n > maxField) {
			t.Fatalf("parseIscsiPerf(%q) = %d accepted out of range", out, n)
		}
		if !ok && n != 0 {
			t.Fatalf("parseIscsiPerf(%q) rejected but returned %d", out, n)
		}
		if ok && !strings.Contains(out[strings.LastIndex(out, "iops average "):], strconv.FormatInt(n, 10)) {
			t.Fatalf("parseIscsiPerf(%q) = %d, not the last average", out, n)
		}
	})
}
