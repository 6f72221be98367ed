package paths

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lunway/lunway/internal/testenv"
)

// smokeWorkloads are tiny: the smoke tests check the plumbing of every
// path (setup, the engine, counters, teardown), never a time.
func smokeWorkloads() []Workload {
	d := 150 * time.Millisecond
	return []Workload{
		{Name: "randwrite", BlockSize: 4096, QueueDepth: 2, Random: true, Duration: d},
		{Name: "journal", BlockSize: 4096, QueueDepth: 1, FlushEvery: 1, RegionBytes: 1 << 20, Duration: d},
	}
}

func recordOf(t *testing.T, rep *Report, path, workload string) Record {
	t.Helper()
	for _, r := range rep.Records {
		if r.Path == path && r.Workload == workload {
			return r
		}
	}
	t.Fatalf("no record for %s %s", path, workload)
	return Record{}
}

// TestRunAllSmoke runs every host path (all but the guest's) for one short
// round: each must set up, fill, run and tear down, and the counted ones
// must report Lunway's counters.
func TestRunAllSmoke(t *testing.T) {
	testenv.NeedCommand(t, "tgtd", "tgt")
	testenv.NeedQEMU(t, "qemu-nbd")
	testenv.NeedQEMU(t, "qemu-img")
	const span = 16 << 20
	rep, err := RunAll(context.Background(), Config{
		Paths:     []string{"raw-file", "lunway-file", "tgt-file", "lunway-blockmap", "qemu-raw-lun", "qemu-qcow2-lun"},
		Workloads: smokeWorkloads(), Rounds: 1, SizeBytes: 64 << 20, SpanBytes: span,
		WorkDir: t.TempDir(), Progress: testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Workloads[0].Name != FillWorkload().Name || len(rep.Records) != 6*3 {
		t.Fatalf("%d records, workloads %v", len(rep.Records), rep.Workloads)
	}
	for _, r := range rep.Records {
		if r.Error != "" {
			t.Errorf("%s %s: %s", r.Path, r.Workload, r.Error)
			continue
		}
		if r.Writes == 0 {
			t.Errorf("%s %s: no writes", r.Path, r.Workload)
		}
		counted := r.Path != "raw-file" && r.Path != "tgt-file"
		if counted != (r.Counters != nil) {
			t.Errorf("%s %s: counters %v", r.Path, r.Workload, r.Counters)
		}
		if r.Counters != nil && r.Counters.SCSIWriteBytes < uint64(r.WriteBytes) {
			t.Errorf("%s %s: %d SCSI bytes written for %d guest bytes", r.Path, r.Workload, r.Counters.SCSIWriteBytes, r.WriteBytes)
		}
	}
	if t.Failed() {
		return
	}
	// The first write of a qcow2 image allocates clusters: its L2 tables
	// and refcounts reach the LUN on top of the data. Raw writes only data.
	fill := FillWorkload().Name
	raw, qcow := recordOf(t, rep, "qemu-raw-lun", fill), recordOf(t, rep, "qemu-qcow2-lun", fill)
	if raw.Counters.SCSIWriteBytes != span || qcow.Counters.SCSIWriteBytes <= span {
		t.Errorf("fill: raw wrote %d SCSI bytes, qcow2 %d, for %d guest bytes", raw.Counters.SCSIWriteBytes, qcow.Counters.SCSIWriteBytes, span)
	}
	if md := rep.Markdown(""); len(md) == 0 {
		t.Error("empty Markdown")
	}
	t.Log("\n" + rep.Text())
}

// TestGuestSmoke boots the emulated guest and runs the raw and the
// VMDK-on-ext4 paths briefly. It needs qemu-system-x86 and the guest built
// by bench/paths/guest/build.sh (a kernel download), so it runs only when
// LUNWAY_BENCH_GUEST=1 asks for it; `make bench` exercises the same paths
// in full.
func TestGuestSmoke(t *testing.T) {
	if os.Getenv("LUNWAY_BENCH_GUEST") != "1" {
		t.Skip("set LUNWAY_BENCH_GUEST=1 (after bench/paths/guest/build.sh) to boot the TCG guest")
	}
	testenv.Long(t)
	testenv.NeedCommand(t, "qemu-system-x86_64", "qemu-system-x86")
	dir := os.Getenv("LUNWAY_BENCH_CACHE")
	if dir == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(d, "lunway-bench")
	}
	guestDir := filepath.Join(dir, "guest")
	if _, _, err := GuestArtifacts(guestDir); err != nil {
		testenv.Unavailable(t, err.Error())
	}
	const span = 8 << 20
	rep, err := RunAll(context.Background(), Config{
		Paths:     []string{"guest-raw-lun", "guest-ext4-vmdk"},
		Workloads: smokeWorkloads()[1:], Rounds: 1, SizeBytes: 64 << 20, SpanBytes: span,
		WorkDir: t.TempDir(), GuestDir: guestDir, Progress: testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Records {
		if r.Error != "" || r.Counters == nil {
			t.Fatalf("%s %s: %s", r.Path, r.Workload, r.Error)
		}
	}
	// The VMDK's grains, grain tables and ext4's metadata and journal
	// reach the LUN on top of the data; the raw disk gets the data only.
	fill := FillWorkload().Name
	raw, vmdk := recordOf(t, rep, "guest-raw-lun", fill), recordOf(t, rep, "guest-ext4-vmdk", fill)
	if raw.Counters.SCSIWriteBytes != span || vmdk.Counters.SCSIWriteBytes <= span ||
		vmdk.Amplification.SANCmdsPerOp <= raw.Amplification.SANCmdsPerOp {
		t.Errorf("fill: raw %+v, vmdk %+v", raw.Counters, vmdk.Counters)
	}
	t.Log("\n" + rep.Text())
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{WorkDir: ""},
		{WorkDir: "x", Paths: []string{"nfs"}},
		{WorkDir: "x", SizeBytes: 1 << 20, SpanBytes: 1 << 20},
		{WorkDir: "x", Rounds: -1},
		{WorkDir: "x", Workloads: []Workload{{Name: "bad"}}},
	} {
		if _, err := RunAll(context.Background(), c); !errors.Is(err, ErrConfig) && !errors.Is(err, ErrWorkload) {
			t.Errorf("%+v: err = %v", c, err)
		}
	}
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
