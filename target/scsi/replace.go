package scsi

import "fmt"

// ReplaceLU atomically puts lu in the place of the logical unit at lun and
// returns the one it replaced: no command can find the LUN missing in
// between (which an initiator would take as LOGICAL UNIT NOT SUPPORTED, a
// permanent loss). The daemon uses it to swap a placeholder that answers
// BUSY, for a LUN whose backend was unreachable at start, for the real one.
// Every nexus sees a POWER ON, RESET unit attention on the new LU. Tasks
// already running on the old one complete; the caller closes its Device.
func (t *Target) ReplaceLU(lun uint64, lu *LU) (*LU, error) {
	if lu == nil {
		return nil, fmt.Errorf("%w: nil LU", ErrInvalidLU)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old, ok := t.mu.lus[lun]
	if !ok {
		return nil, fmt.Errorf("%w: %d", ErrNoSuchLUN, lun)
	}
	if !lu.attach(t, lun) {
		return nil, fmt.Errorf("%w: LUN %d", ErrLUAttached, lun)
	}
	t.registry.remove(old)
	if err := t.registry.add(lu); err != nil {
		lu.detach()
		if rerr := t.registry.add(old); rerr != nil {
			t.log.Error("cannot re-register LU after a failed replace", "lun", lun, "err", rerr)
		}
		return nil, err
	}
	old.detach()
	t.mu.lus[lun] = lu
	t.publishLocked()
	return old, nil
}
