package iscsi

import (
	"fmt"
	"slices"
	"strings"
)

// UpdateTarget replaces the settings of an existing target (alias, portal
// groups, CHAP, ACL) without ending its sessions: logins that start after
// it returns see the new settings, while sessions already in full feature
// phase keep running (end them with CloseSession when a tightened ACL or a
// new CHAP secret must apply to them too). cfg.SCSI must be the target's
// current SCSI device server.
//
// The target's counters carry over. A login that is between its target
// lookup and its completion when UpdateTarget runs is refused with
// "target removed", as during RemoveTarget; initiators log in again.
func (s *Server) UpdateTarget(cfg TargetConfig) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	cfg.PortalGroups = slices.Clone(cfg.PortalGroups)
	cfg.AllowedInitiators = slices.Clone(cfg.AllowedInitiators)
	cfg.AllowedNetworks = slices.Clone(cfg.AllowedNetworks)
	if cfg.CHAP != nil {
		c := *cfg.CHAP
		cfg.CHAP = &c
	}
	key := strings.ToLower(cfg.Name)
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.mu.targets[key]
	if !ok {
		return fmt.Errorf("%w: %s", ErrNoSuchTarget, cfg.Name)
	}
	if old.cfg.SCSI != cfg.SCSI {
		return fmt.Errorf("%w: target %s: UpdateTarget cannot change the SCSI target", ErrInvalidOptions, cfg.Name)
	}
	if cfg.CHAP != nil {
		cfg.CHAP.warnWeak(s.log, cfg.Name)
	}
	// A targetEntry's cfg is read without the lock by logins, so the
	// entry is replaced rather than edited. Connections bound to the old
	// entry move to the new one under s.mu, which is also what
	// connEnded, Stats and RemoveTarget hold, so none of them sees a
	// session on a stale entry.
	ne := &targetEntry{cfg: cfg, key: key}
	ne.totals.fold(&old.totals)
	ne.logins.ok.Store(old.logins.ok.Load())
	ne.logins.authFailed.Store(old.logins.authFailed.Load())
	ne.logins.denied.Store(old.logins.denied.Load())
	ne.logins.failed.Store(old.logins.failed.Load())
	for c := range s.mu.conns {
		c.target.CompareAndSwap(old, ne)
	}
	s.mu.targets[key] = ne
	return nil
}
