package main

import "testing"

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
