package initiator

import (
	"log/slog"
	"time"

	"github.com/lunway/lunway/target/pdu"
)

// CHAP holds CHAP credentials. User/Secret answer the target's challenge;
// with TargetUser/TargetSecret set the initiator also challenges the
// target (mutual CHAP) and fails the login when the target's answer is
// wrong.
type CHAP struct {
	User         string
	Secret       string
	TargetUser   string
	TargetSecret string
	// Algorithms is the CHAP_A list offered, in order [7,5: SHA-256, MD5].
	Algorithms []int
}

// Options configure a session. Zero fields take the defaults in brackets.
type Options struct {
	// InitiatorName [iqn.2026-01.io.lunway:initiator].
	InitiatorName string
	// InitiatorAlias is sent when set.
	InitiatorAlias string
	// ISID is the initiator session id; zero picks a random one
	// (type 0x80, random qualifier).
	ISID [6]byte
	// TargetName of a normal session; empty makes a discovery session.
	TargetName string

	// HeaderDigest and DataDigest ask for CRC32C digests (offered alone,
	// so the login fails if the target refuses them).
	HeaderDigest, DataDigest bool
	// MaxRecvDataSegmentLength declared by the initiator [262144].
	MaxRecvDataSegmentLength int
	// MaxBurstLength [1048576], FirstBurstLength [65536] and
	// MaxOutstandingR2T [8] offered.
	MaxBurstLength, FirstBurstLength, MaxOutstandingR2T int
	// InitialR2T offers InitialR2T=Yes instead of No.
	InitialR2T bool
	// NoImmediateData offers ImmediateData=No instead of Yes.
	NoImmediateData bool
	// Extra keys are offered verbatim at the end of the operational stage
	// (for tests: unknown keys, out-of-range values). Their answers are in
	// Session.LoginAnswers.
	Extra []pdu.KV

	// CHAP credentials; nil offers AuthMethod=None.
	CHAP *CHAP

	// DialTimeout [10s] and LoginTimeout [10s].
	DialTimeout, LoginTimeout time.Duration
	// IgnoreNopIn makes the session not answer the target's NOP-In pings
	// (to test the target's keepalive).
	IgnoreNopIn bool
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
}

func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.InitiatorName == "" {
		r.InitiatorName = "iqn.2026-01.io.lunway:initiator"
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&r.MaxRecvDataSegmentLength, 256<<10)
	def(&r.MaxBurstLength, 1<<20)
	def(&r.FirstBurstLength, 64<<10)
	def(&r.MaxOutstandingR2T, 8)
	if r.DialTimeout == 0 {
		r.DialTimeout = 10 * time.Second
	}
	if r.LoginTimeout == 0 {
		r.LoginTimeout = 10 * time.Second
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	return r
}
