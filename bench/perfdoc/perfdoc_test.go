package perfdoc

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

const doc = `# Performance

Prose before.

<!-- BEGIN GENERATED a -->
old a
<!-- END GENERATED a -->

Prose between.

<!-- BEGIN GENERATED b -->
<!-- END GENERATED b -->
Prose after.
`

func TestReplace(t *testing.T) {
	for _, tc := range []struct {
		name, doc, section, body, want string
		err                            error
	}{
		{name: "replace", doc: doc, section: "a", body: "new a\n",
			want: strings.Replace(doc, "old a\n", "new a\n", 1)},
		{name: "empty section gets body and newline", doc: doc, section: "b", body: "| t |",
			want: strings.Replace(doc, "<!-- BEGIN GENERATED b -->\n", "<!-- BEGIN GENERATED b -->\n| t |\n", 1)},
		{name: "empty body", doc: doc, section: "a", body: "",
			want: strings.Replace(doc, "old a\n", "", 1)},
		{name: "missing", doc: doc, section: "c", err: ErrMarkers},
		{name: "twice", doc: doc + "<!-- BEGIN GENERATED a -->\n", section: "a", err: ErrMarkers},
		{name: "reversed", doc: "<!-- END GENERATED a -->\n<!-- BEGIN GENERATED a -->\n", section: "a", err: ErrMarkers},
		{name: "not on own line", doc: "x <!-- BEGIN GENERATED a --> y <!-- END GENERATED a -->\n", section: "a", err: ErrMarkers},
		{name: "begin at end of doc", doc: "<!-- END GENERATED a -->\n<!-- BEGIN GENERATED a -->", section: "a", err: ErrMarkers},
		{name: "bad name", doc: doc, section: "a -->", err: ErrName},
		{name: "empty name", doc: doc, section: "", err: ErrName},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Replace([]byte(tc.doc), tc.section, []byte(tc.body))
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestSections(t *testing.T) {
	if got := strings.Join(Sections([]byte(doc)), ","); got != "a,b" {
		t.Fatalf("Sections = %q", got)
	}
}

const goBench = `goos: linux
goarch: amd64
pkg: github.com/lunway/lunway/blockmap
cpu: AMD EPYC
BenchmarkVolume/op=randwrite/bs=4KiB/qd=1-2    	   10000	    100 ns/op	  40.00 MB/s	  1.010 WA	  12 B/op	  1 allocs/op
BenchmarkVolume/op=randwrite/bs=4KiB/qd=1-2    	   10000	    300 ns/op	  20.00 MB/s	  1.030 WA	  12 B/op	  1 allocs/op
BenchmarkVolume/op=randwrite/bs=4KiB/qd=1-2    	   10000	    200 ns/op	  30.00 MB/s	  1.020 WA	  12 B/op	  1 allocs/op
BenchmarkFileBaseline/op=seqread-2             	     500	   2000000 ns/op	 500.5 MB/s
BenchmarkBroken-2 notanumber 3 ns/op
--- BENCH: BenchmarkX
PASS
ok  	github.com/lunway/lunway/blockmap	12.3s
`

const goBenchTable = `| benchmark | runs | ns/op | MB/s | B/op | allocs/op | WA |
|---|---:|---:|---:|---:|---:|---:|
| Volume/op=randwrite/bs=4KiB/qd=1 | 3 | 200 | 30.00 | 12.00 | 1.00 | 1.02 |
| FileBaseline/op=seqread | 1 | 2000000 | 500 | – | – | – |
`

func TestGoBench(t *testing.T) {
	bs, err := ParseGoBench(strings.NewReader(goBench))
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 4 || bs[0].Name != "BenchmarkVolume/op=randwrite/bs=4KiB/qd=1" || bs[0].N != 10000 || bs[0].Units["WA"] != 1.01 {
		t.Fatalf("parsed %+v", bs)
	}
	if got := GoBenchTable(bs); got != goBenchTable {
		t.Fatalf("table\n%s\nwant\n%s", got, goBenchTable)
	}
}

func FuzzReplace(f *testing.F) {
	f.Add([]byte(doc), "a", []byte("x\n"))
	f.Add([]byte(doc), "b", []byte(""))
	f.Add([]byte("<!-- BEGIN GENERATED a --><!-- END GENERATED a -->"), "a", []byte("y"))
	f.Fuzz(func(t *testing.T, d []byte, name string, body []byte) {
		out, err := Replace(d, name, body)
		if err != nil {
			return
		}
		// The result keeps the markers, holds the body, and replacing
		// again with the same body changes nothing (when the body holds
		// no markers of its own).
		if !bytes.Contains(out, []byte(Begin(name))) || !bytes.Contains(out, body) {
			t.Fatalf("markers or body lost")
		}
		if bytes.Contains(body, []byte("<!--")) {
			return
		}
		again, err := Replace(out, name, body)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %v", err)
		}
	})
}

func FuzzParseGoBench(f *testing.F) {
	f.Add([]byte(goBench))
	f.Add([]byte("BenchmarkA-8 1 2 ns/op 3"))
	f.Fuzz(func(t *testing.T, in []byte) {
		bs, err := ParseGoBench(bytes.NewReader(in))
		if err != nil {
			return
		}
		for _, b := range bs {
			if b.N <= 0 || !strings.HasPrefix(b.Name, "Benchmark") {
				t.Fatalf("bad result %+v", b)
			}
		}
		GoBenchTable(bs)
	})
}

func TestRatioTable(t *testing.T) {
	in := `BenchmarkVolume/op=randwrite-2 10 100 ns/op 300 IOPS
BenchmarkVolume/op=randwrite-2 10 100 ns/op 100 IOPS
BenchmarkVolume/op=randwrite-2 10 100 ns/op 200 IOPS
BenchmarkVolume/op=only-2 10 100 ns/op 5 IOPS
BenchmarkFileBaseline/op=randwrite-2 10 100 ns/op 50 IOPS
BenchmarkFileBaseline/op=randwrite-2 10 100 ns/op 150 IOPS
`
	bs, err := ParseGoBench(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := "| benchmark | IOPS | FileBaseline IOPS | ratio |\n|---|---:|---:|---:|\n| Volume/op=randwrite | 200 | 100 | 2.00x |\n"
	if got := RatioTable(bs, "FileBaseline", "IOPS"); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if got := RatioTable(bs, "Nothing", "IOPS"); got != "" {
		t.Fatalf("no baseline: %q", got)
	}
}
