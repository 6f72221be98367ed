package paths

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lunway/lunway/bench"
)

// PathInfo describes one I/O path: what the workload goes through.
type PathInfo struct {
	Name string `json:"name"`
	// Kind is baseline (no iSCSI), direct (the guest's disk is the LUN),
	// or stacked (an image file or format between the guest and the LUN).
	Kind string `json:"kind"`
	// Layers lists the stack from the workload down.
	Layers string `json:"layers"`
	// Counted is true when Lunway serves the path's LUN, so that its
	// counters measure the amplification.
	Counted bool `json:"counted"`
	// TCG is true when the path runs through the emulated guest, whose
	// CPU costs dominate its times (its amplification is exact).
	TCG bool `json:"tcg,omitempty"`
}

// Paths lists every path, in the order a round runs them.
func Paths() []PathInfo {
	return []PathInfo{
		{Name: "raw-file", Kind: "baseline", Layers: "engine → backing file (pread/pwrite/fdatasync, page cache)"},
		{Name: "lunway-file", Kind: "direct", Counted: true, Layers: "engine → Go initiator → iSCSI → Lunway → blockdev/file → backing file"},
		{Name: "tgt-file", Kind: "baseline", Layers: "engine → Go initiator → iSCSI → tgtd (rdwr) → backing file"},
		{Name: "lunway-blockmap", Kind: "direct", Counted: true, Layers: "engine → Go initiator → iSCSI → Lunway → blockmap volume → dir store"},
		{Name: "qemu-raw-lun", Kind: "direct", Counted: true, Layers: "engine → NBD → qemu-nbd raw → libiscsi → Lunway → blockmap"},
		{Name: "qemu-qcow2-lun", Kind: "stacked", Counted: true, Layers: "engine → NBD → qemu-nbd qcow2 → libiscsi → Lunway → blockmap"},
		{Name: "guest-raw-lun", Kind: "direct", Counted: true, TCG: true, Layers: "engine → NBD → [TCG guest: qemu-nbd raw → /dev/vdb virtio-blk] → QEMU libiscsi → Lunway → blockmap"},
		{Name: "guest-ext4-vmdk", Kind: "stacked", Counted: true, TCG: true, Layers: "engine → NBD → [TCG guest: qemu-nbd VMDK → file on ext4 (VMFS) → /dev/vda virtio-blk] → QEMU libiscsi → Lunway → blockmap"},
		{Name: "guest-ext4-qcow2", Kind: "stacked", Counted: true, TCG: true, Layers: "engine → NBD → [TCG guest: qemu-nbd qcow2 → file on ext4 (VMFS) → /dev/vda virtio-blk] → QEMU libiscsi → Lunway → blockmap"},
	}
}

// Config configures RunAll.
type Config struct {
	// Paths to run by name (nil: all of Paths()).
	Paths []string
	// Workloads (nil: Standard(5s)). When the first is not a one-pass
	// fill, FillWorkload() is put first.
	Workloads []Workload
	// Rounds of every path and workload [3]; the report takes medians.
	Rounds int
	// SizeBytes of each LUN and of the backing file [1 GiB]; SpanBytes the
	// part of the (virtual) disk the workloads touch [256 MiB].
	SizeBytes, SpanBytes int64
	// WorkDir holds each round's LUNs, files and logs (removed after the
	// round unless KeepWork).
	WorkDir  string
	KeepWork bool
	// GuestDir holds the guest's kernel and initramfs.
	GuestDir string
	// Log receives Lunway's logs; Progress one line per step (may be nil).
	Log      *slog.Logger
	Progress io.Writer
}

func (c *Config) withDefaults() (Config, error) {
	o := *c
	if o.Rounds == 0 {
		o.Rounds = 3
	}
	if o.SizeBytes == 0 {
		o.SizeBytes = 1 << 30
	}
	if o.SpanBytes == 0 {
		o.SpanBytes = 256 << 20
	}
	if o.Workloads == nil {
		o.Workloads = Standard(5 * time.Second)
	}
	if len(o.Workloads) > 0 && !o.Workloads[0].OnePass {
		// Every path first writes its span once (measured), so that reads
		// hit data and overwrites find every thin layer allocated.
		o.Workloads = append([]Workload{FillWorkload()}, o.Workloads...)
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Rounds < 1 || o.Rounds > 100 || o.SizeBytes%(1<<20) != 0 || o.SpanBytes <= 0 || o.SpanBytes%(1<<20) != 0 ||
		o.SpanBytes > o.SizeBytes/2 || o.WorkDir == "" {
		return o, fmt.Errorf("%w: rounds %d, size %d, span %d (a MiB multiple, at most half the size), work dir %q",
			ErrConfig, o.Rounds, o.SizeBytes, o.SpanBytes, o.WorkDir)
	}
	known := map[string]bool{}
	for _, p := range Paths() {
		known[p.Name] = true
	}
	for _, p := range o.Paths {
		if !known[p] {
			return o, fmt.Errorf("%w: unknown path %q", ErrConfig, p)
		}
	}
	for _, w := range o.Workloads {
		if err := w.Validate(o.SpanBytes); err != nil {
			return o, err
		}
	}
	return o, nil
}

// ErrConfig reports an unusable Config.
var ErrConfig = errors.New("paths: invalid configuration")

// Record is one workload on one path in one round.
type Record struct {
	Round    int    `json:"round"`
	Path     string `json:"path"`
	Workload string `json:"workload"`
	Measurement
	// Counters are Lunway's counter deltas over the run (counted paths).
	Counters      *Counters      `json:"counters,omitempty"`
	Amplification *Amplification `json:"amplification,omitempty"`
	// Error says why the path or workload did not run.
	Error string `json:"error,omitempty"`
}

// Report is the machine-readable result of RunAll.
type Report struct {
	Version   int           `json:"version"`
	Started   time.Time     `json:"started"`
	Finished  time.Time     `json:"finished"`
	Host      Host          `json:"host"`
	Rounds    int           `json:"rounds"`
	SizeBytes int64         `json:"size_bytes"`
	SpanBytes int64         `json:"span_bytes"`
	Paths     []PathInfo    `json:"paths"`
	Workloads []Workload    `json:"workloads"`
	Records   []Record      `json:"records"`
	Elapsed   time.Duration `json:"elapsed_ns"`
}

// target is one set-up path: the device the engine drives and where its
// counters come from.
type target struct {
	dev      Device
	counters func() Counters // nil: not counted
	settle   func(ctx context.Context) error
	close    func() error
}

// round holds what a round shares between its paths.
type round struct {
	cfg      Config
	dir      string
	backing  string
	lw       *Lunway
	lun      map[string]int // blockmap LUN index by role
	guest    *Guest
	guestErr error
	exports  map[string]int // guest export index by path
}

// RunAll runs every selected path and workload for cfg.Rounds rounds. A
// path that cannot be set up is recorded with its error (every workload)
// and the run goes on; the returned error is for the run as a whole.
func RunAll(ctx context.Context, c Config) (*Report, error) {
	cfg, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	var sel []PathInfo
	for _, p := range Paths() {
		if cfg.Paths == nil || slices.Contains(cfg.Paths, p.Name) {
			sel = append(sel, p)
		}
	}
	rep := &Report{
		Version: 1, Started: time.Now().UTC(), Host: ReadHost(cfg.WorkDir), Rounds: cfg.Rounds,
		SizeBytes: cfg.SizeBytes, SpanBytes: cfg.SpanBytes, Paths: sel, Workloads: cfg.Workloads,
	}
	for r := 1; r <= cfg.Rounds; r++ {
		recs, err := runRound(ctx, cfg, r, sel)
		rep.Records = append(rep.Records, recs...)
		if err != nil {
			return rep, err
		}
	}
	rep.Finished = time.Now().UTC()
	rep.Elapsed = rep.Finished.Sub(rep.Started)
	rep.Host.LoadAfter = readLoad()
	return rep, nil
}

func runRound(ctx context.Context, cfg Config, n int, sel []PathInfo) (recs []Record, err error) {
	rd := &round{cfg: cfg, dir: filepath.Join(cfg.WorkDir, fmt.Sprintf("round-%d", n)), lun: map[string]int{}, exports: map[string]int{}}
	if err := os.RemoveAll(rd.dir); err != nil {
		return nil, fmt.Errorf("paths: %w", err)
	}
	if err := os.MkdirAll(rd.dir, 0o755); err != nil {
		return nil, fmt.Errorf("paths: %w", err)
	}
	defer func() {
		err = errors.Join(err, rd.close())
		if !cfg.KeepWork {
			os.RemoveAll(rd.dir)
		}
	}()
	rd.backing = filepath.Join(rd.dir, "backing.img")
	if err := createSparse(rd.backing, cfg.SizeBytes); err != nil {
		return nil, err
	}
	// One Lunway target serves a fresh blockmap volume per role.
	var specs []LUNSpec
	for _, p := range sel {
		for _, role := range lunRoles(p.Name) {
			if _, ok := rd.lun[role]; !ok {
				rd.lun[role] = len(specs)
				specs = append(specs, LUNSpec{Backend: "blockmap", Name: role, Size: cfg.SizeBytes})
			}
		}
	}
	if len(specs) > 0 {
		if rd.lw, err = StartLunway(ctx, rd.dir, specs, cfg.Log); err != nil {
			return nil, err
		}
	}
	for i, p := range sel {
		fmt.Fprintf(cfg.Progress, "round %d: %s\n", n, p.Name)
		recs = append(recs, rd.runPath(ctx, n, p)...)
		if ctx.Err() != nil {
			return recs, ctx.Err()
		}
		// The guest is no longer needed after the last guest path.
		if rd.guest != nil && !slices.ContainsFunc(sel[i+1:], func(q PathInfo) bool { return q.TCG }) {
			rd.guest.Close()
			rd.guest = nil
		}
	}
	return recs, nil
}

// lunRoles names the blockmap LUNs a path needs.
func lunRoles(path string) []string {
	switch path {
	case "lunway-blockmap":
		return []string{"direct"}
	case "qemu-raw-lun", "qemu-qcow2-lun":
		return []string{strings.TrimSuffix(path, "-lun")}
	case "guest-raw-lun", "guest-ext4-vmdk", "guest-ext4-qcow2":
		return []string{"guest-datastore", "guest-raw"}
	}
	return nil
}

func (rd *round) close() error {
	var errs []error
	if rd.guest != nil {
		errs = append(errs, rd.guest.Close())
		rd.guest = nil
	}
	if rd.lw != nil {
		errs = append(errs, rd.lw.Close())
		rd.lw = nil
	}
	return errors.Join(errs...)
}

// runPath sets up p, fills its span, runs every workload and tears it down.
func (rd *round) runPath(ctx context.Context, n int, p PathInfo) []Record {
	var recs []Record
	fail := func(from int, err error) []Record {
		for _, w := range rd.cfg.Workloads[from:] {
			recs = append(recs, Record{Round: n, Path: p.Name, Workload: w.Name, Error: err.Error()})
		}
		fmt.Fprintf(rd.cfg.Progress, "round %d: %s: %v\n", n, p.Name, err)
		return recs
	}
	t, err := rd.setup(ctx, p.Name)
	if err != nil {
		return fail(0, err)
	}
	defer func() {
		if err := t.close(); err != nil {
			fmt.Fprintf(rd.cfg.Progress, "round %d: %s: teardown: %v\n", n, p.Name, err)
		}
	}()
	for i, w := range rd.cfg.Workloads {
		rec, err := measure(ctx, t, w, rd.cfg.SpanBytes)
		if err != nil {
			return fail(i, err)
		}
		rec.Round, rec.Path = n, p.Name
		fmt.Fprintf(rd.cfg.Progress, "round %d: %s: %s: %.0f IOPS\n", n, p.Name, w.Name, rec.IOPS)
		recs = append(recs, rec)
	}
	return recs
}

// measure runs one workload between two settled counter snapshots.
func measure(ctx context.Context, t *target, w Workload, span int64) (Record, error) {
	rec := Record{Workload: w.Name}
	if err := t.settle(ctx); err != nil {
		return rec, err
	}
	var before Counters
	if t.counters != nil {
		before = t.counters()
	}
	m, err := Run(ctx, t.dev, w, span)
	if err != nil {
		return rec, err
	}
	rec.Measurement = m
	if t.counters != nil {
		if err := t.settle(ctx); err != nil {
			return rec, err
		}
		d := t.counters().Sub(before)
		a := Amplify(m, d)
		rec.Counters, rec.Amplification = &d, &a
	}
	return rec, nil
}

func noSettle(context.Context) error { return nil }

// setup builds path name's device.
func (rd *round) setup(ctx context.Context, name string) (*target, error) {
	dialLunway := func(addr, iqn string, lun uint64) (*ISCSIDevice, error) {
		tg, err := bench.ParseURL(fmt.Sprintf("iscsi://%s/%s/%d", addr, iqn, lun))
		if err != nil {
			return nil, err
		}
		s, err := bench.Dial(ctx, tg)
		if err != nil {
			return nil, err
		}
		d, err := NewISCSIDevice(ctx, s, lun)
		if err != nil {
			s.Close()
		}
		return d, err
	}
	blockmapLUN := func(role string) (int, func() Counters, func(context.Context) error) {
		lun := rd.lun[role]
		return lun, func() Counters { return rd.lw.Counters(lun) }, func(ctx context.Context) error { return rd.lw.Settle(ctx, lun) }
	}
	switch name {
	case "raw-file":
		d, err := OpenFile(rd.backing)
		if err != nil {
			return nil, err
		}
		return &target{dev: d, settle: noSettle, close: d.Close}, nil

	case "lunway-file":
		lw, err := StartLunway(ctx, rd.dir, []LUNSpec{{Backend: "file", Path: rd.backing, Size: rd.cfg.SizeBytes}}, rd.cfg.Log)
		if err != nil {
			return nil, err
		}
		d, err := dialLunway(lw.Addr(), TargetIQN, 0)
		if err != nil {
			lw.Close()
			return nil, err
		}
		return &target{dev: d, counters: func() Counters { return lw.Counters(0) }, settle: noSettle,
			close: func() error { return errors.Join(d.Close(), lw.Close()) }}, nil

	case "tgt-file":
		tg, err := StartTgt(ctx, rd.dir, rd.backing)
		if err != nil {
			return nil, err
		}
		d, err := dialLunway(tg.Addr(), TgtIQN, 1)
		if err != nil {
			tg.Close()
			return nil, err
		}
		return &target{dev: d, settle: noSettle, close: func() error { return errors.Join(d.Close(), tg.Close()) }}, nil

	case "lunway-blockmap":
		lun, counters, settle := blockmapLUN("direct")
		d, err := dialLunway(rd.lw.Addr(), TargetIQN, uint64(lun))
		if err != nil {
			return nil, err
		}
		return &target{dev: d, counters: counters, settle: settle, close: d.Close}, nil

	case "qemu-raw-lun", "qemu-qcow2-lun":
		// (No qemu-vmdk-lun: a sparse VMDK extent grows by appending
		// grains at the end of its file, which on a raw LUN is the end of
		// the device: ENOSPC on the first new grain. VMDK needs a
		// filesystem under it, as the guest-ext4-vmdk path has.)
		role := strings.TrimSuffix(name, "-lun")
		format := strings.TrimPrefix(role, "qemu-")
		lun, counters, settle := blockmapLUN(role)
		url := rd.lw.URL(lun)
		if format != "raw" {
			qemuImg, err := NeedTool("qemu-img", "qemu-utils")
			if err != nil {
				return nil, err
			}
			if err := run(ctx, qemuImg, "create", "-q", "-f", format, url, strconv.FormatInt(rd.cfg.SpanBytes, 10)); err != nil {
				return nil, err
			}
		}
		q, err := StartQemuNBD(ctx, rd.dir, role, url, format)
		if err != nil {
			return nil, err
		}
		d, err := q.Dial(ctx)
		if err != nil {
			q.Close()
			return nil, err
		}
		return &target{dev: d, counters: counters, settle: settle, close: func() error { return errors.Join(d.Close(), q.Close()) }}, nil

	case "guest-raw-lun", "guest-ext4-vmdk", "guest-ext4-qcow2":
		if err := rd.startGuest(ctx); err != nil {
			return nil, err
		}
		role := "guest-datastore"
		if name == "guest-raw-lun" {
			role = "guest-raw"
		}
		_, counters, settle := blockmapLUN(role)
		d, err := rd.guest.Dial(ctx, rd.exports[name])
		if err != nil {
			return nil, err
		}
		return &target{dev: d, counters: counters, settle: settle, close: d.Close}, nil
	}
	return nil, fmt.Errorf("%w: unknown path %q", ErrConfig, name)
}

// startGuest writes the datastore and boots the guest, once per round; a
// failure is remembered so that every guest path reports it.
func (rd *round) startGuest(ctx context.Context) error {
	if rd.guest != nil || rd.guestErr != nil {
		return rd.guestErr
	}
	exports := []GuestExport{
		{File: "vm.vmdk", Format: "vmdk", Size: rd.cfg.SpanBytes},
		{File: "vm.qcow2", Format: "qcow2", Size: rd.cfg.SpanBytes},
		{File: "/dev/vdb", Format: "raw"},
	}
	rd.exports = map[string]int{"guest-ext4-vmdk": 0, "guest-ext4-qcow2": 1, "guest-raw-lun": 2}
	rd.guestErr = func() error {
		if _, _, err := GuestArtifacts(rd.cfg.GuestDir); err != nil {
			return err
		}
		ds := rd.lun["guest-datastore"]
		tg, err := bench.ParseURL(rd.lw.URL(ds))
		if err != nil {
			return err
		}
		s, err := bench.Dial(ctx, tg)
		if err != nil {
			return err
		}
		d, err := NewISCSIDevice(ctx, s, tg.LUN)
		if err != nil {
			s.Close()
			return err
		}
		err = WriteDatastore(ctx, rd.dir, d, exports)
		if cerr := d.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(rd.cfg.Progress, "booting the guest (TCG)\n")
		rd.guest, err = StartGuest(ctx, GuestOptions{
			Dir: rd.cfg.GuestDir, WorkDir: rd.dir, Mount: "/dev/vda", Exports: exports,
			Disks: []string{rd.lw.URL(ds), rd.lw.URL(rd.lun["guest-raw"])},
		})
		return err
	}()
	return rd.guestErr
}

// createSparse creates a sparse file of size bytes.
func createSparse(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("paths: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("paths: %w", err)
	}
	return f.Close()
}
