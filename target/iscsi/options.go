package iscsi

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/lunway/lunway/target/scsi"
)

// Options configure a Server. Zero fields take the defaults in brackets.
type Options struct {
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger

	// QueueDepth is the CmdSN window per session: commands an initiator may
	// have outstanding [128].
	QueueDepth int
	// MaxRecvDataSegmentLength is the target's declared limit for PDUs it
	// receives [262144].
	MaxRecvDataSegmentLength int
	// MaxBurstLength is the largest solicited burst and Data-In sequence
	// the target accepts in negotiation [1048576].
	MaxBurstLength int
	// FirstBurstLength is the largest unsolicited data the target accepts
	// [65536].
	FirstBurstLength int
	// MaxOutstandingR2T is the most R2Ts per task the target will have
	// outstanding [8].
	MaxOutstandingR2T int
	// RequireInitialR2T makes the target answer InitialR2T=Yes always.
	RequireInitialR2T bool
	// DisableImmediateData makes the target answer ImmediateData=No.
	DisableImmediateData bool
	// DisableDigests makes the target refuse CRC32C header and data digests.
	DisableDigests bool
	// MaxTransferLength caps a command's expected data transfer length;
	// larger write commands fail with CHECK CONDITION [32 MiB].
	MaxTransferLength int

	// NopInterval is how long a connection may be idle before the target
	// sends a NOP-In ping [30s]; negative disables keepalives.
	NopInterval time.Duration
	// NopTimeout is how long the target waits for the answer before
	// dropping the connection [15s].
	NopTimeout time.Duration
	// WriteTimeout bounds how long one batch of responses may take to be
	// written: an initiator that stops reading is dropped after it [30s].
	WriteTimeout time.Duration
	// LoginTimeout bounds the whole login phase [15s].
	LoginTimeout time.Duration
	// TMFTimeout bounds how long a task management function waits for the
	// tasks it aborts before it answers [10s].
	TMFTimeout time.Duration
	// LogoutWait is how long Shutdown waits for initiators to log out after
	// an Async Message "logout requested" before it drains and closes
	// their connections [2s].
	LogoutWait time.Duration
	// MaxSessions caps the sessions of the server [1024].
	MaxSessions int
	// AuthFailureDelay is the pause before answering a failed CHAP login
	// or ACL denial, per source address doubling up to 8x [1s]; negative
	// disables it.
	AuthFailureDelay time.Duration
	// DiscoveryAuth, when set, requires CHAP for discovery sessions.
	DiscoveryAuth *CHAPConfig
}

func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&r.QueueDepth, 128)
	def(&r.MaxRecvDataSegmentLength, 256<<10)
	def(&r.MaxBurstLength, 1<<20)
	def(&r.FirstBurstLength, 64<<10)
	def(&r.MaxOutstandingR2T, 8)
	def(&r.MaxTransferLength, 32<<20)
	def(&r.MaxSessions, 1024)
	defd := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defd(&r.NopInterval, 30*time.Second)
	defd(&r.NopTimeout, 15*time.Second)
	defd(&r.LoginTimeout, 15*time.Second)
	defd(&r.WriteTimeout, 30*time.Second)
	defd(&r.TMFTimeout, 10*time.Second)
	defd(&r.LogoutWait, 2*time.Second)
	defd(&r.AuthFailureDelay, time.Second)
	return r
}

// Validate checks the options (after defaults are applied to zero fields).
func (o *Options) Validate() error {
	r := o.withDefaults()
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, a...)...)
	}
	switch {
	case r.QueueDepth < 1 || r.QueueDepth > 1<<16:
		return bad("QueueDepth %d not in [1,65536]", r.QueueDepth)
	case r.MaxRecvDataSegmentLength < 512 || r.MaxRecvDataSegmentLength > 1<<24-1:
		return bad("MaxRecvDataSegmentLength %d not in [512,16777215]", r.MaxRecvDataSegmentLength)
	case r.MaxBurstLength < 512 || r.MaxBurstLength > 1<<24-1:
		return bad("MaxBurstLength %d not in [512,16777215]", r.MaxBurstLength)
	case r.FirstBurstLength < 512 || r.FirstBurstLength > r.MaxBurstLength:
		return bad("FirstBurstLength %d not in [512,MaxBurstLength]", r.FirstBurstLength)
	case r.MaxOutstandingR2T < 1 || r.MaxOutstandingR2T > 65535:
		return bad("MaxOutstandingR2T %d not in [1,65535]", r.MaxOutstandingR2T)
	case r.MaxTransferLength < 512 || r.MaxTransferLength > 1<<30:
		return bad("MaxTransferLength %d not in [512,1GiB]", r.MaxTransferLength)
	case r.NopInterval > 0 && r.NopTimeout <= 0:
		return bad("NopTimeout must be positive")
	case r.LoginTimeout < 0 || r.TMFTimeout < 0 || r.LogoutWait < 0 || r.WriteTimeout < 0:
		return bad("negative timeout")
	case r.MaxSessions < 1:
		return bad("MaxSessions %d", r.MaxSessions)
	}
	if r.DiscoveryAuth != nil {
		if err := r.DiscoveryAuth.validate(); err != nil {
			return err
		}
	}
	return nil
}

// TargetConfig describes one iSCSI target.
type TargetConfig struct {
	// Name is the iSCSI target name (iqn., eui. or naa.).
	Name string
	// Alias is the optional TargetAlias sent at login.
	Alias string
	// SCSI is the device server behind the target.
	SCSI *scsi.Target
	// PortalGroups lists the target portal group tags that expose the
	// target; empty means every portal group.
	PortalGroups []uint16
	// CHAP, when set, requires CHAP authentication for logins.
	CHAP *CHAPConfig
	// AllowedInitiators, when non-empty, lists the initiator names that
	// may log in (compared case-insensitively, as iSCSI names are).
	AllowedInitiators []string
	// AllowedNetworks, when non-empty, lists the source networks logins
	// may come from.
	AllowedNetworks []netip.Prefix
}

// ValidName reports whether s is an iSCSI name of the iqn., eui. or naa.
// forms (RFC 7143 4.2.7), at most 223 bytes.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 223 {
		return false
	}
	l := strings.ToLower(s)
	switch {
	case strings.HasPrefix(l, "iqn."):
		if len(l) < 12 {
			return false
		}
		for _, c := range []byte(l) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == ':') {
				return false
			}
		}
		return true
	case strings.HasPrefix(l, "eui."):
		return len(l) == 20 && isHex(l[4:])
	case strings.HasPrefix(l, "naa."):
		return (len(l) == 20 || len(l) == 36) && isHex(l[4:])
	}
	return false
}

func isHex(s string) bool {
	for _, c := range []byte(s) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (c *TargetConfig) validate() error {
	if !ValidName(c.Name) {
		return fmt.Errorf("%w: target %q", ErrInvalidName, c.Name)
	}
	if c.SCSI == nil {
		return fmt.Errorf("%w: target %s has no SCSI target", ErrInvalidOptions, c.Name)
	}
	if len(c.Alias) > 255 {
		return fmt.Errorf("%w: alias too long", ErrInvalidOptions)
	}
	for _, p := range c.PortalGroups {
		if p == 0 {
			return fmt.Errorf("%w: portal group tag 0", ErrInvalidOptions)
		}
	}
	for _, n := range c.AllowedInitiators {
		if !ValidName(n) {
			return fmt.Errorf("%w: allowed initiator %q", ErrInvalidName, n)
		}
	}
	for _, p := range c.AllowedNetworks {
		if !p.IsValid() {
			return fmt.Errorf("%w: invalid network %v", ErrInvalidOptions, p)
		}
	}
	if c.CHAP != nil {
		return c.CHAP.validate()
	}
	return nil
}
