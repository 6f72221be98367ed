// Package daemon wires Lunway's pieces from configuration: it opens each
// LUN's backend, builds the SCSI targets and logical units, listens on the
// portals, and applies live changes. It is the only code that names
// concrete backends.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/cmd/lunway/internal/config"
	"github.com/lunway/lunway/target/iscsi"
	"github.com/lunway/lunway/target/scsi"
)

// Options configure a Daemon.
type Options struct {
	// Config is the validated configuration (defaults applied).
	Config *config.Config
	// ConfigPath is where live changes are saved; empty means they are not
	// (the embedded default configuration).
	ConfigPath string
	// Logger receives the daemon's logs.
	Logger *slog.Logger
}

// Daemon is a running Lunway target.
type Daemon struct {
	log        *slog.Logger
	configPath string
	ids        *identityStore
	srv        *iscsi.Server
	registry   *scsi.Registry
	alua       *scsi.ALUA

	// ctx is cancelled by Shutdown; background work (backend reconnects)
	// watches it. bg waits for that work.
	ctx    context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup

	serveWG   sync.WaitGroup
	serveErrs chan error

	// testOpen, when set by tests, replaces openBackend.
	testOpen func(cfg *config.Config, lc config.LUN, field string) (*openedBackend, error)

	mu struct {
		sync.Mutex
		cfg       *config.Config
		targets   map[string]*target
		listeners []net.Listener
		closed    bool
	}
	// stores are the shared object stores of blockmap volumes, with their
	// own lock so that backends open without holding mu.
	stores struct {
		sync.Mutex
		m map[string]*sharedStore
	}
}

type target struct {
	cfg  config.Target
	scsi *scsi.Target
	luns map[uint64]*lun
}

type lun struct {
	cfg config.LUN
	key string // the backing's identity key
	id  Identity
	dev blockdev.Device
	lu  *scsi.LU
	// release frees what the backend opened besides dev (a shared store's
	// reference); it runs after dev.Close.
	release func()
	// pending is set while dev is a placeholder answering BUSY because the
	// backend could not be opened; a background loop retries.
	pending bool
}

// New checks the configuration against the machine (data directory,
// identity store) and builds the iSCSI server. Nothing listens yet.
func New(opts Options) (*Daemon, error) {
	cfg := opts.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, &config.FieldError{Field: "data_dir", Msg: err.Error()}
	}
	ids, err := openIdentityStore(filepath.Join(cfg.DataDir, "identity.json"))
	if err != nil {
		return nil, err
	}
	srvOpts, err := serverOptions(cfg, log)
	if err != nil {
		return nil, err
	}
	srv, err := iscsi.NewServer(srvOpts)
	if err != nil {
		return nil, err
	}
	d := &Daemon{
		log:        log,
		configPath: opts.ConfigPath,
		ids:        ids,
		srv:        srv,
		registry:   scsi.NewRegistry(),
		serveErrs:  make(chan error, 16),
	}
	d.alua, err = buildALUA(cfg)
	if err != nil {
		return nil, err
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.mu.cfg = cfg
	d.mu.targets = map[string]*target{}
	d.stores.m = map[string]*sharedStore{}
	return d, nil
}

func serverOptions(cfg *config.Config, log *slog.Logger) (*iscsi.Options, error) {
	c := cfg.ISCSI
	o := &iscsi.Options{
		Logger:                   log,
		QueueDepth:               c.QueueDepth,
		MaxRecvDataSegmentLength: int(c.MaxRecvDataSegmentLength),
		MaxBurstLength:           int(c.MaxBurstLength),
		FirstBurstLength:         int(c.FirstBurstLength),
		MaxOutstandingR2T:        c.MaxOutstandingR2T,
		MaxTransferLength:        int(c.MaxTransferLength),
		RequireInitialR2T:        c.InitialR2T,
		DisableImmediateData:     c.ImmediateData != nil && !*c.ImmediateData,
		DisableDigests:           c.Digests != nil && !*c.Digests,
		NopInterval:              time.Duration(c.NopInterval),
		NopTimeout:               time.Duration(c.NopTimeout),
		LoginTimeout:             time.Duration(c.LoginTimeout),
		TMFTimeout:               time.Duration(c.AbortWait),
		AuthFailureDelay:         time.Duration(c.AuthFailureDelay),
		MaxSessions:              c.MaxSessions,
	}
	if o.TMFTimeout == 0 {
		o.TMFTimeout = time.Second
	}
	if cfg.Discovery.CHAP != nil {
		chap, err := chapConfig(cfg.Discovery.CHAP, "discovery.chap")
		if err != nil {
			return nil, err
		}
		o.DiscoveryAuth = chap
	}
	if err := o.Validate(); err != nil {
		return nil, &config.FieldError{Field: "iscsi", Msg: err.Error()}
	}
	return o, nil
}

// Start listens on every portal, opens every LUN and starts serving. A
// portal that cannot listen (address in use) is an error and nothing keeps
// running. A LUN whose backend cannot be opened is an error for local
// backends (file, dir); for remote backends (Ceph, S3) it is logged and
// retried in the background while the other LUNs serve.
func (d *Daemon) Start() (err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer func() {
		if err != nil {
			d.closeLocked()
		}
	}()
	cfg := d.mu.cfg
	type bound struct {
		ln  net.Listener
		tag uint16
	}
	var lns []bound
	for i, pg := range cfg.Portals {
		for j, addr := range pg.Listen {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return &config.FieldError{Field: fmt.Sprintf("portal_groups[%d].listen[%d]", i, j),
					Msg: fmt.Sprintf("cannot listen on %s: %v", addr, errors.Unwrap(err))}
			}
			d.mu.listeners = append(d.mu.listeners, ln)
			lns = append(lns, bound{ln, pg.Tag})
		}
	}
	for i := range cfg.Targets {
		if err := d.addTargetLocked(cfg.Targets[i], fmt.Sprintf("targets[%d]", i)); err != nil {
			return err
		}
	}
	for _, b := range lns {
		d.serveWG.Add(1)
		go func() {
			defer d.serveWG.Done()
			err := d.srv.ServePortalGroup(b.ln, b.tag)
			if err != nil && !errors.Is(err, iscsi.ErrServerClosed) {
				d.serveErrs <- fmt.Errorf("portal %s: %w", b.ln.Addr(), err)
			}
		}()
		d.log.Info("listening", "portal", b.ln.Addr().String(), "tpgt", b.tag)
	}
	return nil
}

// Addrs returns the addresses the portals listen on.
func (d *Daemon) Addrs() []net.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []net.Addr
	for _, ln := range d.mu.listeners {
		out = append(out, ln.Addr())
	}
	return out
}

// Err delivers a serving error (a portal that stopped unexpectedly).
func (d *Daemon) Err() <-chan error { return d.serveErrs }

// Server returns the iSCSI server (sessions, statistics).
func (d *Daemon) Server() *iscsi.Server { return d.srv }

// Shutdown stops accepting logins, drains in-flight commands, logs
// sessions out, flushes and closes every LUN. ctx bounds the drain.
func (d *Daemon) Shutdown(ctx context.Context) error {
	err := d.srv.Shutdown(ctx)
	d.serveWG.Wait()
	d.cancel()
	d.bg.Wait()
	d.mu.Lock()
	defer d.mu.Unlock()
	if cerr := d.closeLocked(); err == nil {
		err = cerr
	}
	return err
}

// closeLocked closes every LUN's device (flushing it) and the listeners.
func (d *Daemon) closeLocked() error {
	d.mu.closed = true
	var errs []error
	for _, ln := range d.mu.listeners {
		ln.Close()
	}
	d.mu.listeners = nil
	for name, t := range d.mu.targets {
		for _, l := range t.luns {
			if err := l.close(); err != nil {
				errs = append(errs, fmt.Errorf("target %s LUN %d: %w", name, l.cfg.LUN, err))
			}
		}
		t.luns = map[uint64]*lun{}
	}
	d.mu.targets = map[string]*target{}
	return errors.Join(errs...)
}

func (l *lun) close() error {
	var err error
	if l.dev != nil {
		err = l.dev.Close()
		if errors.Is(err, blockdev.ErrClosed) {
			err = nil
		}
	}
	if l.release != nil {
		l.release()
		l.release = nil
	}
	return err
}

// addTargetLocked builds a target and its LUNs and registers it with the
// server. On error nothing of it remains.
func (d *Daemon) addTargetLocked(tc config.Target, field string) (err error) {
	if _, ok := d.mu.targets[tc.Name]; ok {
		return &config.FieldError{Field: field + ".name", Msg: fmt.Sprintf("target %s already exists", tc.Name)}
	}
	t := &target{
		cfg: tc,
		scsi: scsi.NewTarget(tc.Name, &scsi.TargetOptions{
			Logger:    d.log,
			AbortWait: time.Duration(d.mu.cfg.ISCSI.AbortWait),
			Registry:  d.registry,
			ALUA:      d.alua,
		}),
		luns: map[uint64]*lun{},
	}
	defer func() {
		if err != nil {
			for _, l := range t.luns {
				t.scsi.RemoveLU(l.cfg.LUN)
				l.close()
			}
		}
	}()
	for j, lc := range tc.LUNs {
		lf := fmt.Sprintf("%s.luns[%d]", field, j)
		if err := d.addLUNLocked(t, lc, lf); err != nil {
			if !errors.Is(err, blockdev.ErrUnavailable) {
				return err
			}
			// A remote backend that is down: serve the LUN as BUSY and
			// keep trying, so that the other LUNs serve meanwhile and an
			// initiator never sees this one vanish.
			if perr := d.addPendingLUNLocked(t, lc, lf, err); perr != nil {
				return perr
			}
		}
	}
	itc := iscsi.TargetConfig{
		Name:              tc.Name,
		Alias:             tc.Alias,
		SCSI:              t.scsi,
		PortalGroups:      tc.PortalGroups,
		AllowedInitiators: nil,
	}
	if tc.ACL != nil {
		itc.AllowedInitiators = tc.ACL.Initiators
		for _, n := range tc.ACL.Networks {
			p, err := parsePrefix(n)
			if err != nil {
				return &config.FieldError{Field: field + ".acl.networks", Msg: err.Error()}
			}
			itc.AllowedNetworks = append(itc.AllowedNetworks, p)
		}
	}
	if tc.CHAP != nil {
		chap, err := chapConfig(tc.CHAP, field+".chap")
		if err != nil {
			return err
		}
		itc.CHAP = chap
	}
	if err := d.srv.AddTarget(itc); err != nil {
		return &config.FieldError{Field: field, Msg: err.Error()}
	}
	d.mu.targets[tc.Name] = t
	luns := make([]uint64, 0, len(t.luns))
	for n := range t.luns {
		luns = append(luns, n)
	}
	sort.Slice(luns, func(i, j int) bool { return luns[i] < luns[j] })
	d.log.Info("target ready", "target", tc.Name, "luns", luns)
	return nil
}

// addLUNLocked opens the LUN's backend and attaches it to t.
func (d *Daemon) addLUNLocked(t *target, lc config.LUN, field string) error {
	ob, err := d.openBackend(d.mu.cfg, lc, field+".backend")
	if err != nil {
		return err
	}
	l, err := d.newLUN(t, lc, ob, field)
	if err != nil {
		return err
	}
	if err := t.scsi.AddLU(lc.LUN, l.lu); err != nil {
		l.close()
		return &config.FieldError{Field: field + ".lun", Msg: err.Error()}
	}
	t.luns[lc.LUN] = l
	d.logLUNReady(t, l)
	return nil
}

// newLUN builds the logical unit over an opened backend. On error the
// backend is closed.
func (d *Daemon) newLUN(t *target, lc config.LUN, ob *openedBackend, field string) (*lun, error) {
	l := &lun{cfg: lc, key: ob.key, dev: ob.dev, release: ob.release}
	id, err := d.ids.get(ob.key, &lc)
	if err != nil {
		l.close()
		return nil, &config.FieldError{Field: field + ".naa", Msg: err.Error()}
	}
	l.id = id
	lu, err := d.newLU(t, lc, id, l.dev)
	if err != nil {
		l.close()
		return nil, &config.FieldError{Field: field, Msg: err.Error()}
	}
	l.lu = lu
	if err := d.ids.setSize(ob.key, l.dev.Info().SizeBytes); err != nil {
		d.log.Warn("cannot record LUN size", "err", err)
	}
	return l, nil
}

func (d *Daemon) newLU(t *target, lc config.LUN, id Identity, dev blockdev.Device) (*scsi.LU, error) {
	naa, err := id.NAABytes()
	if err != nil {
		return nil, err
	}
	var prs scsi.PRStore
	if prPath := d.prPath(id); prPath != "" {
		prs = scsi.FilePRStore(prPath)
	}
	return scsi.NewLU(scsi.LUOptions{
		Device:       dev,
		SerialNumber: id.Serial,
		NAA:          naa,
		Logger:       d.log.With("target", t.cfg.Name, "lun", lc.LUN),
		PRStore:      prs,
	})
}

func (d *Daemon) logLUNReady(t *target, l *lun) {
	info := l.dev.Info()
	d.log.Info("LUN ready", "target", t.cfg.Name, "lun", l.cfg.LUN, "backend", l.cfg.Backend.Type,
		"size", config.Size(info.SizeBytes).String(), "thin", info.Thin, "naa", l.id.NAA)
}

// addPendingLUNLocked attaches a placeholder for a LUN whose backend is
// unreachable: it has the LUN's identity and last known size and answers
// I/O with BUSY. A background loop opens the backend and swaps it in.
func (d *Daemon) addPendingLUNLocked(t *target, lc config.LUN, field string, cause error) error {
	key := backendKey(d.mu.cfg, lc)
	id, err := d.ids.get(key, &lc)
	if err != nil {
		return &config.FieldError{Field: field + ".naa", Msg: err.Error()}
	}
	size := id.SizeBytes
	if size == 0 {
		size = int64(lc.Size)
	}
	d.log.Error("LUN backend unavailable; serving it as busy and retrying", "target", t.cfg.Name,
		"lun", lc.LUN, "field", field+".backend", "err", cause)
	l := &lun{cfg: lc, key: key, id: id, pending: true, dev: &unavailableDevice{info: blockdev.Info{
		SizeBytes: size, LogicalBlockSize: 512, PhysicalBlockSize: 4096}}}
	if size > 0 {
		lu, err := d.newLU(t, lc, id, l.dev)
		if err != nil {
			return &config.FieldError{Field: field, Msg: err.Error()}
		}
		if err := t.scsi.AddLU(lc.LUN, lu); err != nil {
			return &config.FieldError{Field: field + ".lun", Msg: err.Error()}
		}
		l.lu = lu
	}
	t.luns[lc.LUN] = l
	d.bg.Add(1)
	go d.retryPending(t, l, field)
	return nil
}

// retryPending opens a pending LUN's backend with backoff until it works
// or the daemon shuts down, then swaps it in atomically.
func (d *Daemon) retryPending(t *target, l *lun, field string) {
	defer d.bg.Done()
	backoff := time.Second
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
		d.mu.Lock()
		cfg := d.mu.cfg
		still := !d.mu.closed && t.luns[l.cfg.LUN] == l
		d.mu.Unlock()
		if !still {
			return
		}
		ob, err := d.openBackend(cfg, l.cfg, field+".backend")
		if err != nil {
			if !errors.Is(err, blockdev.ErrUnavailable) {
				d.log.Error("LUN backend cannot be opened; giving up until restart", "target", t.cfg.Name,
					"lun", l.cfg.LUN, "err", err)
				return
			}
			d.log.Debug("LUN backend still unavailable", "target", t.cfg.Name, "lun", l.cfg.LUN, "err", err)
			continue
		}
		d.mu.Lock()
		if d.mu.closed || t.luns[l.cfg.LUN] != l {
			d.mu.Unlock()
			ob.dev.Close()
			if ob.release != nil {
				ob.release()
			}
			return
		}
		nl, err := d.newLUN(t, l.cfg, ob, field)
		if err == nil {
			if l.lu != nil {
				_, err = t.scsi.ReplaceLU(l.cfg.LUN, nl.lu)
			} else {
				err = t.scsi.AddLU(l.cfg.LUN, nl.lu)
			}
			if err != nil {
				nl.close()
			}
		}
		if err != nil {
			d.mu.Unlock()
			d.log.Error("cannot attach LUN after its backend returned", "target", t.cfg.Name, "lun", l.cfg.LUN, "err", err)
			return
		}
		t.luns[l.cfg.LUN] = nl
		d.logLUNReady(t, nl)
		d.mu.Unlock()
		return
	}
}

// prPath is where a LUN's persistent reservations (APTPL) are kept.
func (d *Daemon) prPath(id Identity) string {
	dir := filepath.Join(d.mu.cfg.DataDir, "reservations")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		d.log.Warn("cannot create reservations directory; APTPL reservations will not persist", "err", err)
		return ""
	}
	return filepath.Join(dir, id.NAA+".json")
}

func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix or address", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
