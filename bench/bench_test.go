package bench

import (
	"context"
	"testing"
	"time"

	"github.com/lunway/lunway/target/iscsitest"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Target
		bad  bool
	}{
		{in: "iscsi://127.0.0.1:3261/iqn.2026-11.dev.lunway:default/0", want: Target{Addr: "127.0.0.1:3261", IQN: "iqn.2026-11.dev.lunway:default", LUN: 0}},
		{in: "iscsi://10.0.0.1/iqn.x:y/7", want: Target{Addr: "10.0.0.1:3260", IQN: "iqn.x:y", LUN: 7}},
		{in: "iscsi://u%25s3cret@h:1/iqn.x:y/1", want: Target{Addr: "h:1", IQN: "iqn.x:y", LUN: 1, User: "u", Secret: "s3cret"}},
		{in: "http://h/iqn.x/0", bad: true},
		{in: "iscsi://h/iqn.x", bad: true},
		{in: "iscsi://h/iqn.x/z", bad: true},
	} {
		got, err := ParseURL(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("ParseURL(%q) = %+v, %v", tc.in, got, err)
		}
	}
}

// TestRun runs every standard workload briefly against an in-process target
// and checks that work was done and accounted for.
func TestRun(t *testing.T) {
	srv := iscsitest.Start(t, &iscsitest.Options{SizeBytes: 64 << 20})
	tg, err := ParseURL(srv.URL(0))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := Dial(ctx, tg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var results []Result
	for _, w := range Standard(400 * time.Millisecond) {
		r, err := Run(ctx, s, tg.LUN, w)
		if err != nil {
			t.Fatal(err)
		}
		if r.Ops == 0 || r.Bytes != r.Ops*int64(w.BlockSize) || r.IOPS <= 0 || r.P50 <= 0 || r.P99 < r.P50 {
			t.Fatalf("%s: implausible result %+v", w.Name, r)
		}
		results = append(results, r)
	}
	t.Log("\n" + Table(results))
}
