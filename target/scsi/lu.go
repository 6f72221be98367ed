package scsi

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/lunway/lunway/blockdev"
)

// Defaults for LUOptions.
const (
	// DefaultMaxTransferBytes bounds one READ/WRITE (VPD 0xB0 MAXIMUM
	// TRANSFER LENGTH is this divided by the logical block size).
	DefaultMaxTransferBytes = 32 << 20
	// maxTransferBytesLimit is the largest MaxTransferBytes accepted.
	maxTransferBytesLimit = 64 << 20
	// DefaultMaxUnmapBlockDescriptors bounds an UNMAP parameter list.
	DefaultMaxUnmapBlockDescriptors = 256
	// DefaultMaxWriteSameBytes bounds one WRITE SAME and one UNMAP
	// descriptor set (MAXIMUM WRITE SAME LENGTH, MAXIMUM UNMAP LBA COUNT).
	DefaultMaxWriteSameBytes = 512 << 20
	// DefaultMaxCompareAndWriteBlocks is the MAXIMUM COMPARE AND WRITE LENGTH.
	DefaultMaxCompareAndWriteBlocks = 64
)

// LUOptions configure a logical unit.
type LUOptions struct {
	// Device is the storage. Required.
	Device blockdev.Device
	// SerialNumber is reported in VPD page 0x80; stable across restarts.
	// Empty derives it from the NAA designator.
	SerialNumber string
	// NAA is the 16-byte NAA IEEE Registered Extended designator (NAA 6)
	// reported in VPD page 0x83; stable across restarts. All zeros derives
	// one from SerialNumber or, failing that, from the target name and
	// LUN when the LU is attached (stable as long as those are).
	NAA [16]byte
	// VendorID (8 chars), ProductID (16) and Revision (4) for INQUIRY;
	// empty means Lunway's defaults.
	VendorID, ProductID, Revision string
	// Logger receives the LU's logs; nil discards them.
	Logger *slog.Logger

	// MaxTransferBytes bounds one data transfer; 0 means
	// DefaultMaxTransferBytes. Reported in VPD 0xB0 and enforced.
	MaxTransferBytes int
	// MaxUnmapBlockDescriptors bounds an UNMAP parameter list; 0 means
	// DefaultMaxUnmapBlockDescriptors.
	MaxUnmapBlockDescriptors int
	// MaxWriteSameBytes bounds WRITE SAME and the LBA count of one UNMAP;
	// 0 means DefaultMaxWriteSameBytes.
	MaxWriteSameBytes int64
	// PRStore, when set, persists persistent reservations whose APTPL bit
	// was set (and restores them in NewLU). Nil refuses APTPL=1.
	PRStore PRStore
}

// Validate reports whether the options are usable.
func (o *LUOptions) Validate() error {
	if o.Device == nil {
		return fmt.Errorf("%w: Device is nil", ErrInvalidLU)
	}
	info := o.Device.Info()
	if info.LogicalBlockSize != 512 && info.LogicalBlockSize != 4096 {
		return fmt.Errorf("%w: logical block size %d", ErrInvalidLU, info.LogicalBlockSize)
	}
	if o.MaxTransferBytes < 0 || o.MaxTransferBytes > maxTransferBytesLimit ||
		o.MaxTransferBytes%info.LogicalBlockSize != 0 {
		return fmt.Errorf("%w: MaxTransferBytes %d", ErrInvalidLU, o.MaxTransferBytes)
	}
	if o.MaxUnmapBlockDescriptors < 0 || o.MaxWriteSameBytes < 0 {
		return fmt.Errorf("%w: negative limit", ErrInvalidLU)
	}
	if len(o.SerialNumber) > 252 {
		return fmt.Errorf("%w: serial number longer than 252 bytes", ErrInvalidLU)
	}
	return nil
}

// limits are the enforced (and reported) block limits, in logical blocks.
type limits struct {
	maxTransfer     uint32 // blocks
	maxUnmapDesc    uint32
	maxWriteSame    uint64 // blocks; also MAXIMUM UNMAP LBA COUNT
	maxCAW          uint32 // blocks
	unmapGranRatio  uint32 // OPTIMAL UNMAP GRANULARITY in blocks
	physPerLogExp   uint8  // LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT
	optimalTransfer uint32 // blocks
}

// LU is a logical unit: a Device and the SCSI state around it.
type LU struct {
	opts LUOptions
	dev  blockdev.Device
	log  *slog.Logger
	lim  limits
	pool *bufPool

	// Optional Device capabilities, found once.
	unmapper  blockdev.Unmapper
	zeroer    blockdev.ZeroWriter
	lbaStatus blockdev.AllocationStatuser
	caw       blockdev.CompareAndWriter
	copier    blockdev.CopyRanger
	aio       blockdev.AsyncIO

	mode   modeState
	stats  luStats
	tasks  taskQueue
	ranges rangeLock
	pr     prState
	copies copyLog

	// nexuses maps Nexus.ID → *nexusState: read on every command without
	// a lock.
	nexuses sync.Map
	// sizeSeen is the capacity the LU last reported; a change noticed on
	// the I/O path raises CAPACITY DATA HAS CHANGED.
	sizeSeen atomic.Int64

	attached struct {
		sync.Mutex
		target *Target
		lun    uint64
		naa    [16]byte
		serial string
	}
}

// NewLU returns a logical unit over opts.Device. When opts.PRStore holds
// persistent reservations saved with APTPL, they are restored.
func NewLU(opts LUOptions) (*LU, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.VendorID == "" {
		opts.VendorID = "LUNWAY"
	}
	if opts.ProductID == "" {
		opts.ProductID = "VIRTUAL-DISK"
	}
	if opts.Revision == "" {
		opts.Revision = "0001"
	}
	if opts.MaxTransferBytes == 0 {
		opts.MaxTransferBytes = DefaultMaxTransferBytes
	}
	if opts.MaxUnmapBlockDescriptors == 0 {
		opts.MaxUnmapBlockDescriptors = DefaultMaxUnmapBlockDescriptors
	}
	if opts.MaxWriteSameBytes == 0 {
		opts.MaxWriteSameBytes = DefaultMaxWriteSameBytes
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lu := &LU{opts: opts, dev: opts.Device, log: log}
	info := lu.dev.Info()
	lu.sizeSeen.Store(info.SizeBytes)
	bs := info.LogicalBlockSize
	lu.lim = limits{
		maxTransfer:     uint32(opts.MaxTransferBytes / bs),
		maxUnmapDesc:    uint32(opts.MaxUnmapBlockDescriptors),
		maxWriteSame:    uint64(opts.MaxWriteSameBytes / int64(bs)),
		maxCAW:          DefaultMaxCompareAndWriteBlocks,
		unmapGranRatio:  1,
		optimalTransfer: uint32(min(opts.MaxTransferBytes, 1<<20) / bs),
	}
	if pbs := info.PhysicalBlockSize; pbs > bs && pbs%bs == 0 {
		for r := pbs / bs; r > 1 && lu.lim.physPerLogExp < 15; r >>= 1 {
			lu.lim.physPerLogExp++
		}
		lu.lim.unmapGranRatio = uint32(pbs / bs)
	}
	lu.pool = newBufPool(opts.MaxTransferBytes)
	lu.unmapper, _ = lu.dev.(blockdev.Unmapper)
	lu.zeroer, _ = lu.dev.(blockdev.ZeroWriter)
	lu.lbaStatus, _ = lu.dev.(blockdev.AllocationStatuser)
	lu.caw, _ = lu.dev.(blockdev.CompareAndWriter)
	lu.copier, _ = lu.dev.(blockdev.CopyRanger)
	lu.aio, _ = lu.dev.(blockdev.AsyncIO)
	lu.mode.setDefaults()
	lu.tasks.init()
	lu.ranges.init()
	lu.attached.naa = opts.NAA
	lu.attached.serial = opts.SerialNumber
	if opts.NAA == ([16]byte{}) && opts.SerialNumber != "" {
		lu.attached.naa = deriveNAA("serial:" + opts.SerialNumber)
	}
	if lu.attached.serial == "" && lu.attached.naa != ([16]byte{}) {
		lu.attached.serial = hex.EncodeToString(lu.attached.naa[8:])
	}
	if opts.PRStore != nil {
		if err := lu.loadPR(); err != nil {
			return nil, err
		}
	}
	return lu, nil
}

// deriveNAA makes an NAA 6 (IEEE Registered Extended) designator from a
// stable string. Lunway has no IEEE company ID of its own; the derived
// designator is unique with overwhelming probability and stable as long
// as the string is, which is what initiators (multipath, clusters) need.
func deriveNAA(s string) [16]byte {
	sum := sha256.Sum256([]byte("lunway-naa\x00" + s))
	var naa [16]byte
	copy(naa[:], sum[:16])
	naa[0] = 0x60 | naa[0]&0x0f
	return naa
}

// Device returns the LU's storage.
func (lu *LU) Device() blockdev.Device { return lu.dev }

// NAA returns the LU's NAA designator (VPD 0x83).
func (lu *LU) NAA() [16]byte {
	lu.attached.Lock()
	defer lu.attached.Unlock()
	return lu.attached.naa
}

func (lu *LU) serial() string {
	lu.attached.Lock()
	defer lu.attached.Unlock()
	return lu.attached.serial
}

func (lu *LU) target() *Target {
	lu.attached.Lock()
	defer lu.attached.Unlock()
	return lu.attached.target
}

func (lu *LU) attach(t *Target, lun uint64) bool {
	lu.attached.Lock()
	defer lu.attached.Unlock()
	if lu.attached.target != nil {
		return false
	}
	lu.attached.target, lu.attached.lun = t, lun
	if lu.attached.naa == ([16]byte{}) {
		lu.attached.naa = deriveNAA(fmt.Sprintf("lun:%s/%d", t.name, lun))
	}
	if lu.attached.serial == "" {
		lu.attached.serial = hex.EncodeToString(lu.attached.naa[8:])
	}
	return true
}

func (lu *LU) detach() {
	lu.attached.Lock()
	lu.attached.target = nil
	lu.attached.Unlock()
}

// CapacityChanged tells the LU that its Device was resized: every nexus
// gets a CAPACITY DATA HAS CHANGED unit attention. (A resize the LU
// notices by itself, on the next command, has the same effect except for
// the nexus of that command.)
func (lu *LU) CapacityChanged() {
	lu.sizeSeen.Store(lu.dev.Info().SizeBytes)
	lu.broadcastUA(nil, ascCapacityChanged)
}

// Stats returns a snapshot of the LU's statistics.
func (lu *LU) Stats() LUStats {
	s := lu.stats.snapshot()
	s.TasksOpen = lu.tasks.count()
	return s
}

// nexusState is the per-I_T-nexus state of one LU.
type nexusState struct {
	nexus   *Nexus
	pending atomic.Int32 // len(mu.ua), read without the lock
	mu      struct {
		sync.Mutex
		ua      []asc
		prevent bool
	}
}

// maxPendingUA bounds the unit attention queue of one nexus.
const maxPendingUA = 8

// nexusState returns n's state, creating it (with a POWER ON, RESET, OR
// BUS DEVICE RESET OCCURRED unit attention) on first access. A nil Nexus
// (a transport or test without sessions) is a nexus of its own.
func (lu *LU) nexusState(n *Nexus) *nexusState {
	var id uint64
	if n != nil {
		id = n.ID
	}
	if v, ok := lu.nexuses.Load(id); ok {
		return v.(*nexusState)
	}
	ns := &nexusState{nexus: n}
	ns.mu.ua = append(ns.mu.ua, ascPowerOnReset)
	ns.pending.Store(1)
	v, _ := lu.nexuses.LoadOrStore(id, ns)
	return v.(*nexusState)
}

func (ns *nexusState) hasUA() bool { return ns.pending.Load() != 0 }

// addUA queues a unit attention. A reset-class condition (29h) replaces
// everything queued, since it implies them; duplicates are dropped; a full
// queue drops the new condition (the queue holds the oldest, most
// important ones, SAM-5 5.14).
func (ns *nexusState) addUA(code asc) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if code>>8 == 0x29 {
		ns.mu.ua = append(ns.mu.ua[:0], code)
	} else {
		for _, c := range ns.mu.ua {
			if c == code || (c>>8 == 0x29 && code>>8 == 0x29) {
				return
			}
		}
		if len(ns.mu.ua) < maxPendingUA {
			ns.mu.ua = append(ns.mu.ua, code)
		}
	}
	ns.pending.Store(int32(len(ns.mu.ua)))
}

// takeUA dequeues the oldest unit attention.
func (ns *nexusState) takeUA() (asc, bool) {
	if ns.pending.Load() == 0 {
		return 0, false
	}
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if len(ns.mu.ua) == 0 {
		return 0, false
	}
	code := ns.mu.ua[0]
	ns.mu.ua = append(ns.mu.ua[:0], ns.mu.ua[1:]...)
	ns.pending.Store(int32(len(ns.mu.ua)))
	return code, true
}

// clearUA drops a queued unit attention (REPORT LUNS clears REPORTED LUNS
// DATA HAS CHANGED, SPC-4 6.33).
func (ns *nexusState) clearUA(code asc) {
	if ns.pending.Load() == 0 {
		return
	}
	ns.mu.Lock()
	defer ns.mu.Unlock()
	out := ns.mu.ua[:0]
	for _, c := range ns.mu.ua {
		if c != code {
			out = append(out, c)
		}
	}
	ns.mu.ua = out
	ns.pending.Store(int32(len(out)))
}

// broadcastUA queues code for every nexus of lu except skip (nil: all).
func (lu *LU) broadcastUA(skip *nexusState, code asc) {
	lu.nexuses.Range(func(_, v any) bool {
		if ns := v.(*nexusState); ns != skip {
			ns.addUA(code)
		}
		return true
	})
}

// reset is a logical unit reset: mode pages return to their defaults,
// SCSI-2 reservations and medium removal prevention are cleared, and
// every nexus gets the unit attention code.
func (lu *LU) reset(code asc) {
	lu.mode.setDefaults()
	lu.pr.releaseSCSI2(nil)
	lu.nexuses.Range(func(_, v any) bool {
		ns := v.(*nexusState)
		ns.mu.Lock()
		ns.mu.prevent = false
		ns.mu.Unlock()
		ns.addUA(code)
		return true
	})
}

// nexusReset is an I_T NEXUS RESET for n.
func (lu *LU) nexusReset(n *Nexus) {
	lu.pr.releaseSCSI2(n)
	ns := lu.nexusState(n)
	ns.mu.Lock()
	ns.mu.prevent = false
	ns.mu.Unlock()
	ns.addUA(ascITNexusLoss)
}

// nexusLost drops n's state.
func (lu *LU) nexusLost(n *Nexus) {
	var id uint64
	if n != nil {
		id = n.ID
	}
	lu.pr.releaseSCSI2(n)
	lu.nexuses.Delete(id)
}

// prevented reports whether any nexus prevents medium removal.
func (lu *LU) prevented() bool {
	found := false
	lu.nexuses.Range(func(_, v any) bool {
		ns := v.(*nexusState)
		ns.mu.Lock()
		found = ns.mu.prevent
		ns.mu.Unlock()
		return !found
	})
	return found
}

// modeState holds the changeable mode parameters. They are read on the
// I/O path without a lock; MODE SELECT changes them under mu.
type modeState struct {
	mu     sync.Mutex
	wce    atomic.Bool // caching page WCE
	dsense atomic.Bool // control page D_SENSE
	swp    atomic.Bool // control page SWP
	tas    atomic.Bool // control page TAS
}

func (m *modeState) setDefaults() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.wce.Store(true)
	m.dsense.Store(false)
	m.swp.Store(false)
	m.tas.Store(false)
}

func padASCII(s string, n int) []byte {
	b := []byte(strings.Repeat(" ", n))
	copy(b, s)
	return b
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
func be24(b []byte) uint32 { return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]) }
func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }
func be64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }
