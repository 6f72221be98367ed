package scsi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
)

// ALUAState is an asymmetric access state (SPC-4 5.15.2); the values are
// the ones REPORT TARGET PORT GROUPS carries.
type ALUAState uint8

// Asymmetric access states.
const (
	ALUAActiveOptimized    ALUAState = 0x0
	ALUAActiveNonOptimized ALUAState = 0x1
	ALUAStandby            ALUAState = 0x2
	ALUAUnavailable        ALUAState = 0x3
	ALUATransitioning      ALUAState = 0xf
)

func (s ALUAState) String() string {
	switch s {
	case ALUAActiveOptimized:
		return "active/optimized"
	case ALUAActiveNonOptimized:
		return "active/non-optimized"
	case ALUAStandby:
		return "standby"
	case ALUAUnavailable:
		return "unavailable"
	case ALUATransitioning:
		return "transitioning"
	}
	return fmt.Sprintf("ALUAState(%#x)", uint8(s))
}

func (s ALUAState) valid() bool {
	switch s {
	case ALUAActiveOptimized, ALUAActiveNonOptimized, ALUAStandby, ALUAUnavailable, ALUATransitioning:
		return true
	}
	return false
}

// Errors of the ALUA configuration API.
var (
	ErrNoSuchGroup  = errors.New("scsi: no such target port group")
	ErrInvalidState = errors.New("scsi: invalid asymmetric access state")
	ErrInvalidGroup = errors.New("scsi: invalid target port group")
)

// PortGroup is one target port group.
type PortGroup struct {
	// ID is the target port group identifier (VPD 0x83, RTPG), non-zero.
	ID    uint16
	State ALUAState
	// Preferred sets the PREF bit: the group is preferred for I/O.
	Preferred bool
	// Ports are the relative target port identifiers in the group. A
	// nexus whose port is in no group's list belongs to its
	// TargetPort.GroupID.
	Ports []uint16
}

// ALUA is the asymmetric logical unit access configuration shared by the
// Targets created with it (typically every gateway-side target of one
// daemon). The daemon changes states live with SetState; every nexus of
// those targets then sees ASYMMETRIC ACCESS STATE CHANGED (2A/06).
//
// All methods may be called concurrently.
type ALUA struct {
	explicit bool
	mu       struct {
		sync.RWMutex
		groups  map[uint16]*PortGroup
		status  map[uint16]byte // RTPG STATUS CODE per group
		targets []*Target
	}
}

// NewALUA returns an ALUA configuration with the given groups. Implicit
// ALUA (the daemon changes states) is always supported; explicit adds SET
// TARGET PORT GROUPS for initiators.
func NewALUA(explicit bool, groups ...PortGroup) (*ALUA, error) {
	a := &ALUA{explicit: explicit}
	a.mu.groups = make(map[uint16]*PortGroup)
	a.mu.status = make(map[uint16]byte)
	for _, g := range groups {
		if err := a.putLocked(g); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func (a *ALUA) putLocked(g PortGroup) error {
	if g.ID == 0 {
		return fmt.Errorf("%w: group ID 0", ErrInvalidGroup)
	}
	if !g.State.valid() {
		return fmt.Errorf("%w: %v", ErrInvalidState, g.State)
	}
	for id, other := range a.mu.groups {
		if id == g.ID {
			continue
		}
		for _, p := range other.Ports {
			for _, q := range g.Ports {
				if p == q {
					return fmt.Errorf("%w: port %d in groups %d and %d", ErrInvalidGroup, p, id, g.ID)
				}
			}
		}
	}
	g.Ports = append([]uint16(nil), g.Ports...)
	a.mu.groups[g.ID] = &g
	return nil
}

// SetGroup adds or replaces a group.
func (a *ALUA) SetGroup(g PortGroup) error {
	a.mu.Lock()
	err := a.putLocked(g)
	targets := a.mu.targets
	a.mu.Unlock()
	if err == nil {
		notifyALUA(targets, nil)
	}
	return err
}

// SetState changes a group's access state (implicit transition).
func (a *ALUA) SetState(id uint16, s ALUAState) error {
	if !s.valid() {
		return fmt.Errorf("%w: %v", ErrInvalidState, s)
	}
	a.mu.Lock()
	g, ok := a.mu.groups[id]
	if ok && g.State != s {
		g.State = s
		a.mu.status[id] = 0x02 // altered by implicit asymmetric access state transition
	}
	targets := a.mu.targets
	a.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %d", ErrNoSuchGroup, id)
	}
	notifyALUA(targets, nil)
	return nil
}

// Groups returns a copy of the configuration, ordered by ID.
func (a *ALUA) Groups() []PortGroup {
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := make([]PortGroup, 0, len(a.mu.groups))
	for _, g := range a.mu.groups {
		c := *g
		c.Ports = append([]uint16(nil), g.Ports...)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (a *ALUA) addTarget(t *Target) {
	a.mu.Lock()
	a.mu.targets = append(a.mu.targets, t)
	a.mu.Unlock()
}

func notifyALUA(targets []*Target, skip *nexusState) {
	for _, t := range targets {
		for _, lu := range t.allLUs() {
			lu.broadcastUA(skip, ascAsymAccessStateChanged)
		}
	}
}

// portCount returns the number of target ports the groups list.
func (a *ALUA) portCount() int {
	a.mu.RLock()
	defer a.mu.RUnlock()
	n := 0
	for _, g := range a.mu.groups {
		n += len(g.Ports)
	}
	return n
}

// tpgsBits is the INQUIRY TPGS field: 01b implicit, 11b implicit and explicit.
func (a *ALUA) tpgsBits() byte {
	if a.explicit {
		return 0x3
	}
	return 0x1
}

// groupLocked returns the group of port, or nil.
func (a *ALUA) groupLocked(port TargetPort) *PortGroup {
	for _, g := range a.mu.groups {
		for _, p := range g.Ports {
			if p == port.RelativeID {
				return g
			}
		}
	}
	return a.mu.groups[port.GroupID]
}

// groupOf returns the target port group ID of port.
func (t *Target) groupOf(port TargetPort) uint16 {
	if t.alua == nil {
		return port.GroupID
	}
	t.alua.mu.RLock()
	defer t.alua.mu.RUnlock()
	if g := t.alua.groupLocked(port); g != nil {
		return g.ID
	}
	return port.GroupID
}

// allows reports whether a command of class c may run through n's port
// (SPC-4 5.15.2.4-5.15.2.6), and the sense when not.
func (a *ALUA) allows(n *Nexus, c aluaClass) (senseData, bool) {
	if c == aluaAny || n == nil {
		return senseData{}, true
	}
	a.mu.RLock()
	g := a.groupLocked(n.Port)
	state := ALUAActiveOptimized
	if g != nil {
		state = g.State
	}
	a.mu.RUnlock()
	switch state {
	case ALUAStandby:
		if c == aluaStandby {
			return senseData{}, true
		}
		return senseData{key: senseNotReady, asc: ascLUNotReadyStandby}, false
	case ALUAUnavailable:
		return senseData{key: senseNotReady, asc: ascLUNotReadyUnavailable}, false
	case ALUATransitioning:
		return senseData{key: senseNotReady, asc: ascLUNotReadyTransition}, false
	}
	return senseData{}, true
}

// REPORT TARGET PORT GROUPS (SPC-4 6.36). Descriptor per group:
//
//	0    PREF (7) | ASYMMETRIC ACCESS STATE (3:0)
//	1    T_SUP O_SUP . . U_SUP S_SUP AN_SUP AO_SUP
//	2-3  TARGET PORT GROUP
//	5    STATUS CODE
//	7    TARGET PORT COUNT, then 4-byte descriptors (2-3: relative port ID)
func (r *request) reportTargetPortGroups() Result {
	a := r.t.alua
	ext := r.cdb[1]>>5 == 0x1
	alloc := be32(r.cdb[6:10])
	var d []byte
	if ext {
		d = []byte{0, 0, 0, 0, 0x10, 0, 0, 0} // FORMAT TYPE 001b, no transition time
	} else {
		d = []byte{0, 0, 0, 0}
	}
	groups := a.Groups()
	if r.cmd.Nexus != nil {
		// The port the command came through is in some group even when
		// the configuration does not list it.
		id := r.t.groupOf(r.cmd.Nexus.Port)
		found := false
		for i := range groups {
			if groups[i].ID == id {
				found = true
				if !containsPort(groups[i].Ports, r.cmd.Nexus.Port.RelativeID) {
					groups[i].Ports = append(groups[i].Ports, r.cmd.Nexus.Port.RelativeID)
				}
			}
		}
		if !found {
			groups = append(groups, PortGroup{ID: id, State: ALUAActiveOptimized, Ports: []uint16{r.cmd.Nexus.Port.RelativeID}})
		}
	}
	a.mu.RLock()
	for _, g := range groups {
		b0 := byte(g.State) & 0x0f
		if g.Preferred {
			b0 |= 0x80
		}
		var desc [8]byte
		desc[0] = b0
		desc[1] = 0x80 | 0x08 | 0x04 | 0x02 | 0x01 // T_SUP U_SUP S_SUP AN_SUP AO_SUP
		binary.BigEndian.PutUint16(desc[2:], g.ID)
		desc[5] = a.mu.status[g.ID]
		desc[7] = byte(min(len(g.Ports), 255))
		d = append(d, desc[:]...)
		for i, p := range g.Ports {
			if i == 255 {
				break
			}
			d = append(d, 0, 0, byte(p>>8), byte(p))
		}
	}
	a.mu.RUnlock()
	binary.BigEndian.PutUint32(d, uint32(len(d)-4))
	return dataIn(d, alloc)
}

func containsPort(ports []uint16, p uint16) bool {
	for _, q := range ports {
		if q == p {
			return true
		}
	}
	return false
}

// SET TARGET PORT GROUPS (SPC-4 6.46): parameter list of a 4-byte header
// and 4-byte descriptors (0: state (3:0), 2-3: group). Only the states an
// initiator may request (active/optimized, active/non-optimized, standby,
// unavailable) are accepted; every descriptor is validated before any
// change.
func (r *request) setTargetPortGroups() Result {
	a := r.t.alua
	plen := int(be32(r.cdb[6:10]))
	r.xfer = uint32(plen)
	if plen == 0 {
		return Result{}
	}
	if plen < 4 || len(r.cmd.DataOut) < plen {
		return r.fail(illegal(ascParamListLength))
	}
	p := r.cmd.DataOut[4:plen]
	if len(p)%4 != 0 {
		return r.fail(illegal(ascParamListLength))
	}
	a.mu.Lock()
	for i := 0; i < len(p); i += 4 {
		st := ALUAState(p[i] & 0x0f)
		if st > ALUAUnavailable {
			a.mu.Unlock()
			return r.fail(invalidParam(4+i, 3))
		}
		if _, ok := a.mu.groups[be16(p[i+2:i+4])]; !ok {
			a.mu.Unlock()
			return r.fail(invalidParam(4+i+2, -1))
		}
	}
	changed := false
	for i := 0; i < len(p); i += 4 {
		g := a.mu.groups[be16(p[i+2:i+4])]
		if st := ALUAState(p[i] & 0x0f); g.State != st {
			g.State = st
			changed = true
		}
		a.mu.status[g.ID] = 0x01 // altered by SET TARGET PORT GROUPS
	}
	targets := a.mu.targets
	a.mu.Unlock()
	if changed {
		notifyALUA(targets, r.ns)
	}
	return Result{TransferLen: r.xfer}
}

// aluaEntries are the target port group commands of the command table.
func aluaEntries() []opInfo {
	const ctl = 0x00
	return []opInfo{
		{name: "REPORT TARGET PORT GROUPS", op: 0xa3, sa: 0x0a, hasSA: true, dir: dirIn, handle: (*request).reportTargetPortGroups, supported: hasALUA, usage: u(0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, ctl), alua: aluaAny, timeout: 1},
		{name: "SET TARGET PORT GROUPS", op: 0xa4, sa: 0x0a, hasSA: true, dir: dirOut, handle: (*request).setTargetPortGroups, supported: hasExplicitALUA, usage: u(0xff, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, ctl), pr: prWrite, alua: aluaAny, timeout: 10},
	}
}

// hasALUA: REPORT TARGET PORT GROUPS needs an ALUA configuration.
func hasALUA(lu *LU) bool {
	t := lu.target()
	return t != nil && t.alua != nil
}

// hasExplicitALUA: SET TARGET PORT GROUPS needs explicit ALUA.
func hasExplicitALUA(lu *LU) bool {
	t := lu.target()
	return t != nil && t.alua != nil && t.alua.explicit
}
