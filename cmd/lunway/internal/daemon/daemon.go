package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/cmd/lunway/internal/config"
	"github.com/lunway/lunway/cmd/lunway/internal/metrics"
	"github.com/lunway/lunway/target/iscsi"
	"github.com/lunway/lunway/target/scsi"
)

// Options configure a Daemon.
type Options struct {
	// Config is the validated configuration (defaults applied).
	Config *config.Config
	// ConfigPath is where live changes are saved; empty means they are not.
	ConfigPath string
	// Logger receives the daemon's logs.
	Logger *slog.Logger
	// AuditLogger receives one line per change and lifecycle event (LUN
	// ready, configuration changed, session dropped...). It should not be
	// sampled: these lines are the record of what operators did. Nil
	// means Logger.
	AuditLogger *slog.Logger
	// Version is reported by the API and the metrics.
	Version string
}

// Daemon is a running Lunway target.
type Daemon struct {
	log        *slog.Logger
	audit      *slog.Logger
	configPath string
	version    string
	dataDir    string        // restart-only: fixed for the daemon's life
	abortWait  time.Duration // restart-only
	ids        *identityStore
	srv        *iscsi.Server
	registry   *scsi.Registry
	alua       *scsi.ALUA
	started    time.Time

	// ctx is cancelled by Shutdown; background work (backend reconnects,
	// backend opens) watches it. bg waits for that work.
	ctx    context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup

	serveWG   sync.WaitGroup // portal listeners
	svcWG     sync.WaitGroup // API and metrics servers
	serveErrs chan error

	// testOpen, when set by tests, replaces openBackend.
	testOpen func(cfg *config.Config, lc config.LUN, field string) (*openedBackend, error)

	changes, changesFailed atomic.Uint64

	// change serializes changes: Start, API changes, snapshot and clone
	// operations, the swap of a pending LUN, and the final close. It is
	// taken before mu.
	change sync.Mutex

	// mu guards the published state. Readers take it briefly; a change
	// publishes each step under it. mu.cfg is never modified in place: a
	// change publishes a new one.
	mu struct {
		sync.Mutex
		cfg       *config.Config
		targets   map[string]*target // by lower-cased name
		listeners map[string]*listener
		closed    bool
	}
	// stores are the shared object stores of blockmap volumes, with their
	// own lock so that backends open without holding mu.
	stores struct {
		sync.Mutex
		m map[string]*sharedStore
	}
	// services are the API and metrics servers (set by Start).
	services struct {
		api, metrics []*http.Server
		apiAddrs     []string
		metricsAddr  string
	}
}

type target struct {
	cfg  config.Target
	itc  iscsi.TargetConfig // what the iSCSI server has
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
	// cacheStats reads the LUN's local cache statistics, when it has one.
	cacheStats func() metrics.CacheStats
	// pending is set while dev is a placeholder answering BUSY because the
	// backend could not be opened; a background loop retries. cause is why.
	pending bool
	cause   string
}

// listener is one bound portal address.
type listener struct {
	addr    string // as configured
	tag     uint16
	ln      net.Listener
	stopped atomic.Bool // closed on purpose: its Serve error is expected
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
	alua, err := scsi.NewALUA(true)
	if err != nil {
		return nil, err
	}
	audit := opts.AuditLogger
	if audit == nil {
		audit = log
	}
	d := &Daemon{
		log:        log,
		audit:      audit,
		configPath: opts.ConfigPath,
		version:    opts.Version,
		dataDir:    cfg.DataDir,
		abortWait:  time.Duration(cfg.ISCSI.AbortWait),
		ids:        ids,
		srv:        srv,
		registry:   scsi.NewRegistry(),
		alua:       alua,
		serveErrs:  make(chan error, 16),
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.mu.cfg = cfg
	d.mu.targets = map[string]*target{}
	d.mu.listeners = map[string]*listener{}
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

// Start listens on every portal, opens every LUN, starts the management
// API and the metrics endpoint, and starts serving. A portal that cannot
// listen (address in use) is an error and nothing keeps running. A LUN
// whose backend cannot be opened is an error for local backends (file,
// dir); for remote backends (Ceph, S3) it is logged and retried in the
// background while the other LUNs serve.
func (d *Daemon) Start() error {
	d.change.Lock()
	defer d.change.Unlock()
	d.mu.Lock()
	cfg, closed := d.mu.cfg, d.mu.closed
	d.mu.Unlock()
	if closed {
		return iscsi.ErrServerClosed
	}
	ctx, cancel := context.WithCancel(d.ctx)
	defer cancel()
	x := &txn{}
	empty := &config.Config{DataDir: cfg.DataDir, Log: cfg.Log, ISCSI: cfg.ISCSI, API: cfg.API,
		Metrics: cfg.Metrics, Discovery: cfg.Discovery}
	// The API socket first: a second daemon on the same data directory
	// stops there, before it touches a backend.
	err := d.listenServices(x, cfg)
	if err == nil {
		err = d.apply(ctx, x, empty, cfg, true)
	}
	if err != nil {
		x.rollback()
		d.mu.Lock()
		d.mu.closed = true
		d.mu.Unlock()
		d.cancel()
		d.bg.Wait()
		d.srv.Close()
		return err
	}
	x.commit()
	return nil
}

// Addrs returns the addresses the portals listen on, in the order of the
// configuration.
func (d *Daemon) Addrs() []net.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []net.Addr
	for _, pg := range d.mu.cfg.Portals {
		for _, a := range pg.Listen {
			if l := d.mu.listeners[a]; l != nil {
				out = append(out, l.ln.Addr())
			}
		}
	}
	return out
}

// Err delivers a serving error (a portal or API listener that stopped
// unexpectedly).
func (d *Daemon) Err() <-chan error { return d.serveErrs }

// Server returns the iSCSI server (sessions, statistics).
func (d *Daemon) Server() *iscsi.Server { return d.srv }

func (d *Daemon) serveError(err error) {
	select {
	case d.serveErrs <- err:
	default:
		d.log.Error("serving failed", "err", err)
	}
}

// serve starts accepting iSCSI connections on l.
func (d *Daemon) serve(l *listener) {
	d.serveWG.Add(1)
	go func() {
		defer d.serveWG.Done()
		err := d.srv.ServePortalGroup(l.ln, l.tag)
		if err != nil && !errors.Is(err, iscsi.ErrServerClosed) && !l.stopped.Load() {
			d.serveError(fmt.Errorf("portal %s: %w", l.ln.Addr(), err))
		}
	}()
	d.audit.Info("listening", "portal", l.ln.Addr().String(), "tpgt", l.tag)
}

// Shutdown stops the management API, stops accepting logins, drains
// in-flight commands, logs sessions out, flushes and closes every LUN,
// then stops the metrics endpoint. ctx bounds the drain.
func (d *Daemon) Shutdown(ctx context.Context) error {
	d.mu.Lock()
	d.mu.closed = true
	d.mu.Unlock()
	// No more changes: in-flight ones see d.ctx end and roll back.
	d.cancel()
	for _, s := range d.services.api {
		if err := s.Shutdown(ctx); err != nil {
			s.Close()
		}
	}
	err := d.srv.Shutdown(ctx)
	d.serveWG.Wait()
	d.bg.Wait()
	d.change.Lock()
	d.mu.Lock()
	cerr := d.closeLocked()
	d.mu.Unlock()
	d.change.Unlock()
	for _, s := range d.services.metrics {
		s.Close()
	}
	d.svcWG.Wait()
	if err == nil {
		err = cerr
	}
	return err
}

// closeLocked closes every LUN's device (flushing it) and the listeners.
func (d *Daemon) closeLocked() error {
	var errs []error
	for _, l := range d.mu.listeners {
		l.stopped.Store(true)
		l.ln.Close()
	}
	d.mu.listeners = map[string]*listener{}
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

// retire closes a LUN that was detached from its target, once the
// commands already running on it have finished (bounded by wait).
func (d *Daemon) retire(l *lun, wait time.Duration) {
	if l.lu != nil {
		deadline := time.Now().Add(wait)
		for {
			st := l.lu.Stats()
			if st.InFlight <= 0 && st.TasksOpen == 0 {
				break
			}
			if time.Now().After(deadline) {
				d.log.Warn("closing a removed LUN with commands still running", "lun", l.cfg.LUN, "in_flight", st.InFlight)
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if err := l.close(); err != nil {
		d.log.Error("closing a removed LUN", "lun", l.cfg.LUN, "err", err)
	}
}

// newTarget builds a target's SCSI device server (no LUNs yet).
func (d *Daemon) newTarget(tc config.Target) *target {
	return &target{
		cfg: tc,
		scsi: scsi.NewTarget(tc.Name, &scsi.TargetOptions{
			Logger:    d.log.With("target", tc.Name),
			AbortWait: d.abortWait,
			Registry:  d.registry,
			ALUA:      d.alua,
		}),
		luns: map[uint64]*lun{},
	}
}

// iscsiTarget builds what the iSCSI server needs for tc (secrets read
// from their files now).
func (d *Daemon) iscsiTarget(t *target, tc config.Target, field string) (iscsi.TargetConfig, error) {
	itc := iscsi.TargetConfig{
		Name:         tc.Name,
		Alias:        tc.Alias,
		SCSI:         t.scsi,
		PortalGroups: tc.PortalGroups,
	}
	if tc.ACL != nil {
		itc.AllowedInitiators = tc.ACL.Initiators
		for i, n := range tc.ACL.Networks {
			p, err := parsePrefix(n)
			if err != nil {
				return itc, &config.FieldError{Field: fmt.Sprintf("%s.acl.networks[%d]", field, i), Msg: err.Error()}
			}
			itc.AllowedNetworks = append(itc.AllowedNetworks, p)
		}
	}
	if tc.CHAP != nil {
		chap, err := chapConfig(tc.CHAP, field+".chap")
		if err != nil {
			return itc, err
		}
		itc.CHAP = chap
	}
	return itc, nil
}

// openLUN opens a LUN's backend and builds its logical unit (not attached
// to the target yet). At start, a remote backend that is unreachable gives
// a pending LUN instead of an error.
func (d *Daemon) openLUN(cfg *config.Config, t *target, lc config.LUN, field string, startup bool) (*lun, error) {
	ob, err := d.openBackend(cfg, lc, field+".backend")
	if err != nil {
		if startup && errors.Is(err, blockdev.ErrUnavailable) {
			// A remote backend that is down: serve the LUN as BUSY and
			// keep trying, so that the other LUNs serve meanwhile and an
			// initiator never sees this one vanish.
			return d.pendingLUN(cfg, t, lc, field, err)
		}
		return nil, err
	}
	return d.newLUN(t, lc, ob, field)
}

// newLUN builds the logical unit over an opened backend. On error the
// backend is closed.
func (d *Daemon) newLUN(t *target, lc config.LUN, ob *openedBackend, field string) (*lun, error) {
	l := &lun{cfg: lc, key: ob.key, dev: ob.dev, release: ob.release, cacheStats: ob.cacheStats}
	if cs, ok := ob.dev.(cacheStatser); ok && l.cacheStats == nil {
		l.cacheStats = cacheMetrics(cs)
	}
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
	d.audit.Info("LUN ready", "target", t.cfg.Name, "lun", l.cfg.LUN, "backend", l.cfg.Backend.Type,
		"size", config.Size(info.SizeBytes).String(), "thin", info.Thin, "naa", l.id.NAA)
}

// pendingLUN builds a placeholder for a LUN whose backend is unreachable:
// it has the LUN's identity and last known size and answers I/O with
// BUSY. startRetry then opens the backend and swaps it in.
func (d *Daemon) pendingLUN(cfg *config.Config, t *target, lc config.LUN, field string, cause error) (*lun, error) {
	key := backendKey(cfg, lc)
	id, err := d.ids.get(key, &lc)
	if err != nil {
		return nil, &config.FieldError{Field: field + ".naa", Msg: err.Error()}
	}
	size := id.SizeBytes
	if size == 0 {
		size = int64(lc.Size)
	}
	d.log.Error("LUN backend unavailable; serving it as busy and retrying", "target", t.cfg.Name,
		"lun", lc.LUN, "field", field+".backend", "err", cause)
	l := &lun{cfg: lc, key: key, id: id, pending: true, cause: cause.Error(), dev: &unavailableDevice{info: blockdev.Info{
		SizeBytes: size, LogicalBlockSize: 512, PhysicalBlockSize: 4096}}}
	if size > 0 {
		lu, err := d.newLU(t, lc, id, l.dev)
		if err != nil {
			return nil, &config.FieldError{Field: field, Msg: err.Error()}
		}
		l.lu = lu
	}
	return l, nil
}

// startRetry starts the loop that opens a pending LUN's backend.
func (d *Daemon) startRetry(t *target, l *lun, field string) {
	d.bg.Add(1)
	go d.retryPending(t, l, field)
}

// retryPending opens a pending LUN's backend with backoff until it works,
// the LUN is removed or the daemon shuts down, then swaps it in
// atomically.
func (d *Daemon) retryPending(t *target, l *lun, field string) {
	defer d.bg.Done()
	backoff := time.Second
	current := func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return !d.mu.closed && d.mu.targets[strings.ToLower(t.cfg.Name)] == t && t.luns[l.cfg.LUN] == l
	}
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
		if !current() {
			return
		}
		d.mu.Lock()
		cfg := d.mu.cfg
		d.mu.Unlock()
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
		if d.swapPending(t, l, ob, field) {
			return
		}
	}
}

// swapPending puts the LUN over the opened backend in the place of the
// pending one. It reports whether the loop is done.
func (d *Daemon) swapPending(t *target, l *lun, ob *openedBackend, field string) bool {
	d.change.Lock()
	defer d.change.Unlock()
	d.mu.Lock()
	ok := !d.mu.closed && d.mu.targets[strings.ToLower(t.cfg.Name)] == t && t.luns[l.cfg.LUN] == l
	cfg := t.cfg
	d.mu.Unlock()
	if !ok {
		ob.dev.Close()
		if ob.release != nil {
			ob.release()
		}
		return true
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
		d.log.Error("cannot attach LUN after its backend returned", "target", cfg.Name, "lun", l.cfg.LUN, "err", err)
		return true
	}
	d.mu.Lock()
	t.luns[l.cfg.LUN] = nl
	d.mu.Unlock()
	d.logLUNReady(t, nl)
	return true
}

// prPath is where a LUN's persistent reservations (APTPL) are kept.
func (d *Daemon) prPath(id Identity) string {
	dir := filepath.Join(d.dataDir, "reservations")
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
