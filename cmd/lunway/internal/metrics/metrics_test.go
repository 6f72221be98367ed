package metrics

import (
	"bytes"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockmap"
	"github.com/lunway/lunway/target/iscsi"
	"github.com/lunway/lunway/target/scsi"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.txt")

type fixed Snapshot

func (f fixed) MetricsSnapshot() Snapshot { return Snapshot(f) }

func sample() Snapshot {
	var a scsi.LUStats
	a.Reads, a.Writes, a.Others = 3, 10, 4
	a.ReadBytes, a.WriteBytes = 12288, 40960
	a.ReadLatency[0], a.ReadLatency[5] = 2, 1 // 3 reads: two <=50us, one <=2.5ms
	a.ReadLatencySum = uint64(2*40*time.Microsecond + 2*time.Millisecond)
	a.WriteLatency[3], a.WriteLatency[scsi.NumLatencyBuckets-1] = 9, 1 // one write slower than 5s
	a.WriteLatencySum = uint64(9*400*time.Microsecond + 6*time.Second)
	a.ErrorsBySenseKey[5], a.ErrorsBySenseKey[1] = 2, 1
	a.Busy, a.Conflicts, a.InFlight, a.TasksOpen = 5, 1, 2, 3
	vol := blockmap.Stats{CacheHits: 7, CacheMisses: 3, WriteAmplification: 1.25, LifetimeGuestBytes: 1000,
		LifetimeBackendBytes: 1500, GuestWriteBytes: 40960, BackendWriteBytes: 51200, BackendReadBytes: 8192,
		LiveBytes: 1 << 20, StoredBytes: 2 << 20, DirtyBytes: 4096, MemoryEstimate: 65536, GCRuns: 2,
		GCBytesMoved: 8192, Checkpoints: 6, Snapshots: 1, ErrorsOutstanding: true}
	return Snapshot{
		Version: "v1.2.3",
		LUNs: []LUN{
			{Target: "iqn.2026-11.dev.lunway:a", LUN: 0, Backend: "file", SizeBytes: 1 << 30, Health: blockdev.Healthy, SCSI: a},
			{Target: "iqn.2026-11.dev.lunway:a", LUN: 1, Backend: "blockmap", SizeBytes: 2 << 30, Health: blockdev.Degraded,
				Volume: &vol, Cache: &CacheStats{ReadHits: 11, ReadMisses: 2, ReadEvictions: 1, LogBytesUsed: 1 << 20,
					LogBytesLimit: 4 << 30, PendingUploads: 3, UploadedBytes: 1 << 22, ReadTimeouts: 4, OldestPendingSecs: 1.5,
					WritersWaiting: 2, UploadFailures: 6, StoreFailing: true}},
		},
		Targets: []iscsi.TargetStats{
			{Name: "", Sessions: 1, LoginsOK: 4},
			{Name: "iqn.2026-11.dev.lunway:a", Sessions: 2, LoginsOK: 5, LoginsAuthFailed: 2, LoginsDenied: 1, LoginsFailed: 3,
				PDUsIn: 100, PDUsOut: 90, BytesIn: 65536, BytesOut: 32768, Commands: 17},
		},
		Backends:      []Backend{{Name: "file:/data/a0.img", Type: "file"}, {Name: "dir:/data/store", Type: "dir", Health: blockdev.Degraded}},
		ConfigChanges: 9, ConfigChangesFailed: 2,
	}
}

// TestCollectorGolden: the exposition of a known snapshot, byte for byte,
// and clean under promlint.
func TestCollectorGolden(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(fixed(sample())))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	golden := filepath.Join("testdata", "golden.txt")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("exposition differs from %s (run with -update after checking):\n%s", golden, buf.Bytes())
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestHandler: /metrics always, /debug/pprof only when asked.
func TestHandler(t *testing.T) {
	for _, pprofOn := range []bool{false, true} {
		srv := httptest.NewServer(Handler(NewRegistry(fixed(sample())), pprofOn, nil))
		get := func(path string) int {
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if code := get("/metrics"); code != 200 {
			t.Errorf("pprof=%v: /metrics %d", pprofOn, code)
		}
		want := 404
		if pprofOn {
			want = 200
		}
		if code := get("/debug/pprof/"); code != want {
			t.Errorf("pprof=%v: /debug/pprof/ %d, want %d", pprofOn, code, want)
		}
		if code := get("/other"); code != 404 {
			t.Errorf("/other %d", code)
		}
		srv.Close()
	}
}
