package paths

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"flag"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// sampleReport is a fixed report: two counted paths and the raw file, two
// workloads, three rounds, one failed path.
func sampleReport() *Report {
	ws := []Workload{
		{Name: "randwrite-4k-qd1", BlockSize: 4096, QueueDepth: 1, Random: true, Duration: 5 * time.Second},
		{Name: "journal-4k-flush", BlockSize: 4096, QueueDepth: 1, FlushEvery: 1, RegionBytes: 16 << 20, Duration: 5 * time.Second},
	}
	all := Paths()
	pick := func(name string) PathInfo {
		for _, p := range all {
			if p.Name == name {
				return p
			}
		}
		panic(name)
	}
	rep := &Report{
		Version: 1,
		Started: time.Date(2026, 11, 25, 0, 30, 0, 0, time.UTC),
		Host: Host{CPU: "Test CPU", Cores: 2, MemoryMiB: 24000, Kernel: "Linux 6.1", Filesystem: "ext4",
			GoVersion: "go1.26", LoadBefore: "3.00 2.00 1.00", LoadAfter: "4.00 3.00 2.00"},
		Rounds: 3, SizeBytes: 1 << 30, SpanBytes: 256 << 20,
		Paths:     []PathInfo{pick("raw-file"), pick("lunway-blockmap"), pick("guest-ext4-vmdk")},
		Workloads: ws,
	}
	for round := 1; round <= 3; round++ {
		f := float64(round)
		for _, w := range ws {
			flushes := int64(0)
			if w.FlushEvery > 0 {
				flushes = 1000
			}
			m := Measurement{Writes: 1000 * int64(round), Flushes: flushes * int64(round), WriteBytes: 4096000 * int64(round),
				Elapsed: 5 * time.Second, IOPS: 1000 * f, MiBps: 3.9 * f, P50: time.Duration(round) * 100 * time.Microsecond,
				P99: time.Duration(round) * time.Millisecond}
			rep.Records = append(rep.Records, Record{Round: round, Path: "raw-file", Workload: w.Name, Measurement: m})
			c := Counters{SCSIWrites: uint64(m.Writes), SCSIOthers: uint64(m.Flushes + 1), SCSIWriteBytes: uint64(m.WriteBytes),
				BackendWriteOps: m.Flushes + 2, BackendWriteBytes: m.WriteBytes * 11 / 10, BackendFlushes: m.Flushes + 1}
			a := Amplify(m, c)
			rep.Records = append(rep.Records, Record{Round: round, Path: "lunway-blockmap", Workload: w.Name, Measurement: m, Counters: &c, Amplification: &a})
		}
		for _, w := range ws {
			rep.Records = append(rep.Records, Record{Round: round, Path: "guest-ext4-vmdk", Workload: w.Name,
				Error: "paths: guest: LUNWAY-GUEST-FAIL: mount /dev/vda"})
		}
	}
	return rep
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n%s", name, got)
	}
}

func TestSummary(t *testing.T) {
	rows := sampleReport().Summary()
	if len(rows) != 6 {
		t.Fatalf("%d rows", len(rows))
	}
	r, ok := find(rows, "lunway-blockmap", "journal-4k-flush")
	if !ok || r.Runs != 3 || r.IOPS != 2000 || r.P50 != 200*time.Microsecond || r.P99 != 2*time.Millisecond || r.Amp == nil {
		t.Fatalf("row %+v", r)
	}
	// Round 2: 2000 writes, 2000 flushes, 2001 others, 2002 backend writes.
	if r.Amp.SANCmdsPerOp != 4001.0/2000 || r.Amp.BackendWritesPerWrite != 2002.0/2000 {
		t.Fatalf("amplification %+v", r.Amp)
	}
	if r, _ := find(rows, "guest-ext4-vmdk", "randwrite-4k-qd1"); r.Runs != 0 || !strings.Contains(r.Error, "LUNWAY-GUEST-FAIL") {
		t.Fatalf("failed path row %+v", r)
	}
	if r, _ := find(rows, "raw-file", "randwrite-4k-qd1"); r.Amp != nil {
		t.Fatalf("raw-file is not counted: %+v", r)
	}
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestMarkdownGolden(t *testing.T) {
	golden(t, "report.md", []byte(sampleReport().Markdown("perf/paths-")))
}

func TestTextGolden(t *testing.T) {
	golden(t, "report.txt", []byte(sampleReport().Text()))
}

func TestReportJSON(t *testing.T) {
	rep := sampleReport()
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rep, &back) {
		t.Fatal("report does not survive JSON")
	}
	for _, key := range []string{`"records"`, `"san_cmds_per_op"`, `"backend_write_ops"`, `"p99_ns"`, `"load_before"`, `"layers"`} {
		if !bytes.Contains(b, []byte(key)) {
			t.Errorf("JSON lacks %s", key)
		}
	}
}

// wellFormed checks that b is one well-formed XML document with an svg root.
func wellFormed(t *testing.T, b []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	root := ""
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed: %v\n%s", err, b)
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q", root)
	}
}

func TestChartsGolden(t *testing.T) {
	iops, amp, backend := sampleReport().Charts()
	for _, c := range [][]byte{iops, amp, backend} {
		wellFormed(t, c)
	}
	golden(t, "iops.svg", iops)
	golden(t, "amplification.svg", amp)
	golden(t, "backend-writes.svg", backend)
}

func TestChartEdges(t *testing.T) {
	nan := math.NaN()
	for _, c := range []Chart{
		{},
		{Title: "no series", Groups: []string{"a"}},
		{Title: "<&>\"'", Groups: []string{"<g>"}, Series: []string{"&s"}, Values: [][]float64{{1}}},
		{Title: "nan and missing", Groups: []string{"a", "b"}, Series: []string{"x", "y"}, Values: [][]float64{{nan}}},
		{Title: "log of zeros", Log: true, Groups: []string{"a"}, Series: []string{"x", "y"}, Values: [][]float64{{0, -1}}},
		{Title: "inf", Groups: []string{"a"}, Series: []string{"x"}, Values: [][]float64{{math.Inf(1)}}},
		{Title: "tiny", Log: true, Groups: []string{"a"}, Series: []string{"x", "y"}, Values: [][]float64{{0.001, 1e9}}},
		{Title: "too many", Groups: make([]string, 100), Series: make([]string, 100)},
	} {
		svg := c.SVG()
		wellFormed(t, svg)
		if !bytes.Contains(svg, []byte(esc(c.Title))) {
			t.Errorf("%q: title missing", c.Title)
		}
	}
	for _, tc := range []struct {
		in   float64
		want string
	}{{0, "0"}, {0.05, "0.05"}, {1.5, "1.5"}, {2, "2"}, {150, "150"}, {12345, "12k"}, {3.4e6, "3.4M"}} {
		if got := num(tc.in); got != tc.want {
			t.Errorf("num(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, want float64 }{{0.3, 0.5}, {1, 1}, {1.1, 2}, {30, 50}, {700, 1000}, {0, 1}} {
		if got := niceStep(tc.in); got != tc.want {
			t.Errorf("niceStep(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
