package scsi

import "fmt"

// RemoveGroup removes target port group id (the daemon removed the portal
// group behind it). Every nexus of the ALUA's targets sees ASYMMETRIC
// ACCESS STATE CHANGED, as after SetGroup, so that multipath initiators
// re-read the groups. A nexus still on a port of the removed group falls
// back to its TargetPort.GroupID (no group: active/optimized).
func (a *ALUA) RemoveGroup(id uint16) error {
	a.mu.Lock()
	_, ok := a.mu.groups[id]
	delete(a.mu.groups, id)
	delete(a.mu.status, id)
	targets := a.mu.targets
	a.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %d", ErrNoSuchGroup, id)
	}
	notifyALUA(targets, nil)
	return nil
}
