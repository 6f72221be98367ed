package iscsi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lunway/lunway/target/pdu"
)

// Server is an iSCSI target server. Create it with NewServer; all methods
// may be called concurrently.
type Server struct {
	opts Options
	log  *slog.Logger

	// ctx is the parent of every connection's context; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	nextID   atomic.Uint64 // session and nexus ids
	pool     bufPool
	limiter  failLimiter
	outPool  sync.Pool // *outPDU
	connWG   sync.WaitGroup
	shutdown atomic.Bool

	mu struct {
		sync.Mutex
		closed    bool
		listeners map[*portal]struct{}
		targets   map[string]*targetEntry // by lower-cased name
		conns     map[*conn]struct{}
		sessions  map[uint64]*conn // full feature sessions by id
		tsih      uint16
		discovery counters // discovery-session totals
	}
}

// portal is one listener and the target portal group it belongs to.
type portal struct {
	ln   net.Listener
	tpgt uint16
}

// targetEntry is a configured target and its counters.
type targetEntry struct {
	cfg    TargetConfig
	key    string
	totals counters // folded in from ended connections; guarded by Server.mu
	logins loginCounters
}

type loginCounters struct {
	ok, authFailed, denied, failed atomic.Uint64
}

// NewServer returns a Server with no targets.
func NewServer(opts *Options) (*Server, error) {
	o := opts.withDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	s := &Server{opts: o, log: o.Logger}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mu.listeners = make(map[*portal]struct{})
	s.mu.targets = make(map[string]*targetEntry)
	s.mu.conns = make(map[*conn]struct{})
	s.mu.sessions = make(map[uint64]*conn)
	s.outPool.New = func() any { return new(outPDU) }
	s.limiter.init()
	if o.DiscoveryAuth != nil {
		o.DiscoveryAuth.warnWeak(s.log, "discovery")
	}
	return s, nil
}

// Serve accepts connections on ln for target portal group 1. It returns
// ErrServerClosed after Shutdown or Close, or the listener's error.
func (s *Server) Serve(ln net.Listener) error { return s.ServePortalGroup(ln, 1) }

// ServePortalGroup accepts connections on ln for the target portal group
// tpgt (1..65535). Serve closes ln when it returns.
func (s *Server) ServePortalGroup(ln net.Listener, tpgt uint16) error {
	if tpgt == 0 {
		ln.Close()
		return fmt.Errorf("%w: portal group tag 0", ErrInvalidOptions)
	}
	p := &portal{ln: ln, tpgt: tpgt}
	s.mu.Lock()
	if s.mu.closed || s.shutdown.Load() {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.mu.listeners[p] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.mu.listeners, p)
		s.mu.Unlock()
		ln.Close()
	}()
	s.log.Info("serving iSCSI", "addr", ln.Addr().String(), "tpgt", tpgt)
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.shutdown.Load() || s.isClosed() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept", "err", err, "retry", backoff)
				select {
				case <-time.After(backoff):
				case <-s.ctx.Done():
					return ErrServerClosed
				}
				continue
			}
			return err
		}
		backoff = 0
		c := newConn(s, nc, tpgt)
		s.mu.Lock()
		if s.mu.closed || s.shutdown.Load() {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		s.mu.conns[c] = struct{}{}
		s.connWG.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.connWG.Done()
			c.serve()
		}()
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.closed
}

func (s *Server) closeListenersLocked() {
	for p := range s.mu.listeners {
		p.ln.Close()
	}
}

// Shutdown stops accepting connections, asks every initiator in a normal
// session to log out (Async Message "logout requested"), waits up to
// Options.LogoutWait for them, then stops reading from the remaining
// connections, lets their in-flight commands finish and their responses go
// out, and closes them. It returns when every connection has ended, or with
// ctx's error when ctx ends first (the remaining connections are then
// closed as by Close).
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdown.Store(true)
	s.mu.Lock()
	s.closeListenersLocked()
	conns := make([]*conn, 0, len(s.mu.conns))
	for c := range s.mu.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	for _, c := range conns {
		c.requestLogout()
	}
	done := make(chan struct{})
	go func() {
		s.connWG.Wait()
		close(done)
	}()
	wait := time.NewTimer(s.opts.LogoutWait)
	defer wait.Stop()
	select {
	case <-done:
		return nil
	case <-wait.C:
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
	s.mu.Lock()
	conns = conns[:0]
	for c := range s.mu.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.drain()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}

// Close closes every listener and connection at once, aborting in-flight
// commands, and waits for the connections' goroutines.
func (s *Server) Close() error {
	s.shutdown.Store(true)
	s.mu.Lock()
	s.mu.closed = true
	s.closeListenersLocked()
	for c := range s.mu.conns {
		c.abort(ErrServerClosed)
	}
	s.mu.Unlock()
	s.cancel()
	s.connWG.Wait()
	return nil
}

// AddTarget adds a target; logins to it are accepted at once.
func (s *Server) AddTarget(cfg TargetConfig) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	cfg.PortalGroups = slices.Clone(cfg.PortalGroups)
	cfg.AllowedInitiators = slices.Clone(cfg.AllowedInitiators)
	cfg.AllowedNetworks = slices.Clone(cfg.AllowedNetworks)
	if cfg.CHAP != nil {
		c := *cfg.CHAP
		cfg.CHAP = &c
		c.warnWeak(s.log, cfg.Name)
	}
	key := strings.ToLower(cfg.Name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.mu.targets[key]; ok {
		return fmt.Errorf("%w: %s", ErrTargetExists, cfg.Name)
	}
	s.mu.targets[key] = &targetEntry{cfg: cfg, key: key}
	return nil
}

// RemoveTarget removes a target and ends its sessions (their tasks are
// aborted through scsi.Target.NexusLost). It returns once they ended.
func (s *Server) RemoveTarget(name string) error {
	key := strings.ToLower(name)
	s.mu.Lock()
	t, ok := s.mu.targets[key]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNoSuchTarget, name)
	}
	delete(s.mu.targets, key)
	var victims []*conn
	for c := range s.mu.conns {
		if c.targetEntry() == t {
			victims = append(victims, c)
		}
	}
	s.mu.Unlock()
	for _, c := range victims {
		c.abort(fmt.Errorf("target %s removed", name))
	}
	for _, c := range victims {
		<-c.done
	}
	return nil
}

func (s *Server) lookupTarget(name string) *targetEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.targets[strings.ToLower(name)]
}

// exposes reports whether the target is reachable through portal group tpgt.
func (t *targetEntry) exposes(tpgt uint16) bool {
	return len(t.cfg.PortalGroups) == 0 || slices.Contains(t.cfg.PortalGroups, tpgt)
}

// allows reports whether the initiator may log in from addr.
func (t *targetEntry) allows(initiator string, addr netip.Addr) bool {
	if len(t.cfg.AllowedInitiators) > 0 {
		ok := false
		for _, n := range t.cfg.AllowedInitiators {
			if strings.EqualFold(n, initiator) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(t.cfg.AllowedNetworks) > 0 {
		addr = addr.Unmap()
		for _, p := range t.cfg.AllowedNetworks {
			if p.Contains(addr) {
				return true
			}
		}
		return false
	}
	return true
}

// SessionInfo is a snapshot of one session.
type SessionInfo struct {
	ID            uint64
	InitiatorName string
	ISID          [6]byte
	TSIH          uint16
	// Target is the target name, empty for discovery sessions.
	Target      string
	Discovery   bool
	PortalGroup uint16
	RemoteAddr  string
	LocalAddr   string
	Params      pdu.Params
	Start       time.Time
	// InFlight counts commands received and not yet answered.
	InFlight int
}

// Sessions returns a snapshot of the sessions in full feature phase.
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.mu.sessions))
	for _, c := range s.mu.sessions {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	out := make([]SessionInfo, 0, len(conns))
	for _, c := range conns {
		out = append(out, c.info())
	}
	slices.SortFunc(out, func(a, b SessionInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// CloseSession ends a session, aborting its tasks, and returns once it ended.
func (s *Server) CloseSession(id uint64) error {
	s.mu.Lock()
	c, ok := s.mu.sessions[id]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %d", ErrNoSuchSession, id)
	}
	c.abort(errors.New("session closed by operator"))
	<-c.done
	return nil
}

// TargetStats is a snapshot of one target's counters. Discovery sessions
// are counted under the empty Name.
type TargetStats struct {
	Name     string
	Sessions int
	// Logins by outcome: accepted, failed authentication (CHAP), denied by
	// ACL, and failed otherwise (bad parameters, not found...).
	LoginsOK, LoginsAuthFailed, LoginsDenied, LoginsFailed uint64
	PDUsIn, PDUsOut                                        uint64
	BytesIn, BytesOut                                      uint64
	Commands                                               uint64
}

// Stats returns a snapshot of every target's counters, sorted by name,
// with discovery first.
func (s *Server) Stats() []TargetStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	byKey := make(map[string]*TargetStats)
	disc := &TargetStats{}
	s.mu.discovery.addTo(disc)
	byKey[""] = disc
	for k, t := range s.mu.targets {
		ts := &TargetStats{Name: t.cfg.Name}
		t.totals.addTo(ts)
		ts.LoginsOK = t.logins.ok.Load()
		ts.LoginsAuthFailed = t.logins.authFailed.Load()
		ts.LoginsDenied = t.logins.denied.Load()
		ts.LoginsFailed = t.logins.failed.Load()
		byKey[k] = ts
	}
	for _, c := range s.mu.sessions {
		k := ""
		if t := c.targetEntry(); t != nil {
			k = t.key
		}
		if ts := byKey[k]; ts != nil {
			ts.Sessions++
			c.stats.addTo(ts)
		}
	}
	out := make([]TargetStats, 0, len(byKey))
	for _, ts := range byKey {
		out = append(out, *ts)
	}
	slices.SortFunc(out, func(a, b TargetStats) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// counters are per-connection traffic counters (atomics: written by the
// reader and writer goroutines, read by Stats).
type counters struct {
	pdusIn, pdusOut, bytesIn, bytesOut, commands atomic.Uint64
}

func (c *counters) addTo(ts *TargetStats) {
	ts.PDUsIn += c.pdusIn.Load()
	ts.PDUsOut += c.pdusOut.Load()
	ts.BytesIn += c.bytesIn.Load()
	ts.BytesOut += c.bytesOut.Load()
	ts.Commands += c.commands.Load()
}

func (c *counters) fold(from *counters) {
	c.pdusIn.Add(from.pdusIn.Load())
	c.pdusOut.Add(from.pdusOut.Load())
	c.bytesIn.Add(from.bytesIn.Load())
	c.bytesOut.Add(from.bytesOut.Load())
	c.commands.Add(from.commands.Load())
}

// registerSession makes c a full feature session, reinstating (closing)
// an older session of the same initiator port on the same target port.
func (s *Server) registerSession(c *conn) (uint16, error) {
	var old []*conn
	s.mu.Lock()
	if s.mu.closed || s.shutdown.Load() {
		s.mu.Unlock()
		return 0, ErrServerClosed
	}
	for _, o := range s.mu.sessions {
		if o.sess.discovery == c.sess.discovery && o.tpgt == c.tpgt && o.sess.isid == c.sess.isid &&
			strings.EqualFold(o.sess.initiatorName, c.sess.initiatorName) && o.targetEntry() == c.targetEntry() {
			old = append(old, o)
		}
	}
	s.mu.Unlock()
	for _, o := range old {
		s.log.Info("session reinstatement", "initiator", c.sess.initiatorName,
			"isid", fmt.Sprintf("%x", c.sess.isid[:]), "old_session", o.sess.id)
		o.abort(errors.New("session reinstated"))
		<-o.done
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed || s.shutdown.Load() {
		return 0, ErrServerClosed
	}
	// UpdateTarget and RemoveTarget replace entries under s.mu; a login
	// that looked its target up before one of them must not register on
	// the stale entry (RemoveTarget would then miss its session).
	if t := c.targetEntry(); t != nil && s.mu.targets[t.key] != t {
		return 0, errTargetReplaced
	}
	if len(s.mu.sessions) >= s.opts.MaxSessions {
		return 0, errTooManySessions
	}
	for {
		s.mu.tsih++
		if s.mu.tsih == 0 {
			continue
		}
		inUse := false
		for _, o := range s.mu.sessions {
			if o.sess.tsih == s.mu.tsih {
				inUse = true
				break
			}
		}
		if !inUse {
			break
		}
	}
	c.sess.tsih = s.mu.tsih
	s.mu.sessions[c.sess.id] = c
	return c.sess.tsih, nil
}

var (
	errTooManySessions = errors.New("iscsi: too many sessions")
	errTargetReplaced  = errors.New("iscsi: target removed or changed during login")
)

// sessionByTSIH reports whether a session with tsih exists.
func (s *Server) sessionByTSIH(tsih uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.mu.sessions {
		if c.sess.tsih == tsih {
			return true
		}
	}
	return false
}

// connEnded unregisters c and folds its counters into its target's.
func (s *Server) connEnded(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.mu.conns, c)
	if c.sess != nil && s.mu.sessions[c.sess.id] == c {
		delete(s.mu.sessions, c.sess.id)
	}
	if t := c.targetEntry(); t != nil {
		t.totals.fold(&c.stats)
	} else if c.sess != nil && c.sess.discovery {
		s.mu.discovery.fold(&c.stats)
	}
}

// targetsOf returns the targets whose sessions are in conns (for cold reset).
func (s *Server) connsOfTarget(t *targetEntry) []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*conn
	for c := range s.mu.conns {
		if c.targetEntry() == t {
			out = append(out, c)
		}
	}
	return out
}

// portalAddrs returns "host:port,tpgt" for every portal exposing t (all
// portals when t is nil), for SendTargets. A wildcard listen address is
// replaced by local, the address the initiator reached.
func (s *Server) portalAddrs(t *targetEntry, local netip.Addr) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for p := range s.mu.listeners {
		if t != nil && !t.exposes(p.tpgt) {
			continue
		}
		ap, err := netip.ParseAddrPort(p.ln.Addr().String())
		if err != nil {
			continue
		}
		ip := ap.Addr()
		if ip.IsUnspecified() && local.IsValid() {
			ip = local
		}
		out = append(out, fmt.Sprintf("%s,%d", netip.AddrPortFrom(ip.Unmap(), ap.Port()), p.tpgt))
	}
	slices.Sort(out)
	return out
}

// targetList returns the targets an initiator may see in SendTargets.
func (s *Server) targetList(initiator string, addr netip.Addr, only string) []*targetEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*targetEntry
	for _, t := range s.mu.targets {
		if only != "" && !strings.EqualFold(only, t.cfg.Name) {
			continue
		}
		if t.allows(initiator, addr) {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b *targetEntry) int { return strings.Compare(a.key, b.key) })
	return out
}
