package paths

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/lunway/lunway/backend/dir"
	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/file"
	"github.com/lunway/lunway/blockmap"
	"github.com/lunway/lunway/target/iscsi"
	"github.com/lunway/lunway/target/scsi"
)

// TargetIQN is the name of the target Lunway serves in the benchmark.
const TargetIQN = "iqn.2026-11.dev.lunway:bench-paths"

// LUNSpec is one LUN of an in-process Lunway target.
type LUNSpec struct {
	// Backend is "blockmap" (a volume named Name in the target's
	// directory store) or "file" (the file at Path, created sparse).
	Backend string
	Name    string
	Path    string
	Size    int64
}

// Lunway is an in-process Lunway target on 127.0.0.1 serving the LUNs of
// one benchmark round, built from the same packages as the daemon
// (target/iscsi, target/scsi, blockmap on backend/dir, blockdev/file) with
// their default options, so that the benchmark reads the counters the
// daemon publishes straight from the LU and the volume.
type Lunway struct {
	srv      *iscsi.Server
	addr     string
	store    *dir.Store
	lus      []*scsi.LU
	vols     []*blockmap.Volume // nil for file LUNs
	files    []*ioCounts        // nil for blockmap LUNs
	devs     []blockdev.Device
	serveErr chan error
}

// StartLunway opens (creating) every LUN and serves them as LUNs 0..n-1
// of TargetIQN. Blockmap volumes live in the directory store workDir/store.
func StartLunway(ctx context.Context, workDir string, luns []LUNSpec, log *slog.Logger) (_ *Lunway, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Lunway{serveErr: make(chan error, 1)}
	defer func() {
		if err != nil {
			l.closeDevices()
		}
	}()
	st := scsi.NewTarget(TargetIQN, &scsi.TargetOptions{Logger: log})
	for i, spec := range luns {
		var (
			dev   blockdev.Device
			vol   *blockmap.Volume
			count *ioCounts
		)
		switch spec.Backend {
		case "blockmap":
			if l.store == nil {
				l.store, err = dir.Open(ctx, filepath.Join(workDir, "store"), nil)
				if err != nil {
					return nil, fmt.Errorf("paths: store: %w", err)
				}
			}
			vol, err = blockmap.Create(ctx, l.store, spec.Name, spec.Size, &blockmap.Options{Logger: log})
			if err != nil {
				return nil, fmt.Errorf("paths: volume %s: %w", spec.Name, err)
			}
			dev = vol
		case "file":
			f, err := file.Open(ctx, spec.Path, &file.Options{Create: true, SizeBytes: spec.Size})
			if err != nil {
				return nil, fmt.Errorf("paths: %w", err)
			}
			count = &ioCounts{}
			dev = countingDevice{Device: f, n: count}
		default:
			return nil, fmt.Errorf("paths: LUN %d: unknown backend %q", i, spec.Backend)
		}
		l.devs, l.vols, l.files = append(l.devs, dev), append(l.vols, vol), append(l.files, count)
		lu, err := scsi.NewLU(scsi.LUOptions{Device: dev, SerialNumber: fmt.Sprintf("BENCHPATHS%04d", i), Logger: log})
		if err != nil {
			return nil, fmt.Errorf("paths: %w", err)
		}
		if err := st.AddLU(uint64(i), lu); err != nil {
			return nil, fmt.Errorf("paths: %w", err)
		}
		l.lus = append(l.lus, lu)
	}
	l.srv, err = iscsi.NewServer(&iscsi.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("paths: %w", err)
	}
	if err := l.srv.AddTarget(iscsi.TargetConfig{Name: TargetIQN, SCSI: st}); err != nil {
		return nil, fmt.Errorf("paths: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("paths: %w", err)
	}
	l.addr = ln.Addr().String()
	go func() { l.serveErr <- l.srv.Serve(ln) }()
	return l, nil
}

// Addr is the portal address (127.0.0.1:port).
func (l *Lunway) Addr() string { return l.addr }

// URL is the libiscsi URL of LUN lun.
func (l *Lunway) URL(lun int) string { return fmt.Sprintf("iscsi://%s/%s/%d", l.addr, TargetIQN, lun) }

// Counters snapshots LUN lun's counters.
func (l *Lunway) Counters(lun int) Counters {
	var vs *blockmap.Stats
	if v := l.vols[lun]; v != nil {
		s := v.Stats()
		vs = &s
	}
	return fromStats(l.lus[lun].Stats(), vs, l.files[lun])
}

// Settle makes a blockmap LUN persist its map (a checkpoint), so that each
// workload pays for the map changes it made instead of leaving them to a
// timer that would charge a later one. A no-op for file LUNs.
func (l *Lunway) Settle(ctx context.Context, lun int) error {
	if v := l.vols[lun]; v != nil {
		return v.Checkpoint(ctx)
	}
	return nil
}

func (l *Lunway) closeDevices() error {
	var errs []error
	for _, d := range l.devs {
		errs = append(errs, d.Close())
	}
	l.devs = nil
	if l.store != nil {
		errs = append(errs, l.store.Close())
		l.store = nil
	}
	return errors.Join(errs...)
}

// Close stops serving (finishing in-flight commands for up to 10 s) and
// closes every LUN.
func (l *Lunway) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := l.srv.Shutdown(ctx)
	if err != nil {
		l.srv.Close()
	}
	if serr := <-l.serveErr; serr != nil && !errors.Is(serr, iscsi.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return errors.Join(err, l.closeDevices())
}
