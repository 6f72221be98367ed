package iscsi

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/lunway/lunway/target/pdu"
)

// Secret is a CHAP secret. It never prints or logs its value.
type Secret string

// String implements fmt.Stringer without revealing the secret.
func (Secret) String() string { return "[secret]" }

// LogValue implements slog.LogValuer without revealing the secret.
func (Secret) LogValue() slog.Value { return slog.StringValue("[secret]") }

// GoString keeps %#v from revealing the secret.
func (Secret) GoString() string { return "[secret]" }

// MinSecretLength is the secret length RFC 7143 12.1.3 recommends at least
// (96 bits); shorter secrets work but are logged as weak.
const MinSecretLength = 12

// maxSecretLength caps secrets (and user names).
const maxSecretLength = 255

// CHAPConfig is the CHAP authentication of a target or of discovery
// sessions. User and Secret authenticate the initiator (one-way CHAP).
// With MutualUser and MutualSecret set the target also authenticates
// itself to initiators that ask for it (mutual CHAP); initiators that do
// not ask still log in.
type CHAPConfig struct {
	User         string
	Secret       Secret
	MutualUser   string
	MutualSecret Secret
	// RequireMutual refuses initiators that do not ask the target to
	// authenticate itself.
	RequireMutual bool
}

func (c *CHAPConfig) validate() error {
	switch {
	case c.User == "" || len(c.User) > maxSecretLength:
		return fmt.Errorf("%w: CHAP user must be 1..255 bytes", ErrInvalidOptions)
	case c.Secret == "" || len(c.Secret) > maxSecretLength:
		return fmt.Errorf("%w: CHAP secret must be 1..255 bytes", ErrInvalidOptions)
	case (c.MutualUser == "") != (c.MutualSecret == ""):
		return fmt.Errorf("%w: mutual CHAP needs both a user and a secret", ErrInvalidOptions)
	case len(c.MutualUser) > maxSecretLength || len(c.MutualSecret) > maxSecretLength:
		return fmt.Errorf("%w: mutual CHAP user/secret too long", ErrInvalidOptions)
	case c.MutualSecret != "" && subtle.ConstantTimeCompare([]byte(c.MutualSecret), []byte(c.Secret)) == 1:
		return fmt.Errorf("%w: mutual CHAP secret must differ from the initiator secret (RFC 7143 12.1.3)", ErrInvalidOptions)
	case c.RequireMutual && c.MutualSecret == "":
		return fmt.Errorf("%w: RequireMutual without a mutual secret", ErrInvalidOptions)
	}
	return nil
}

func (c *CHAPConfig) warnWeak(log *slog.Logger, who string) {
	if len(c.Secret) < MinSecretLength {
		log.Warn("CHAP secret shorter than recommended", "for", who, "min_bytes", MinSecretLength)
	}
	if c.MutualSecret != "" && len(c.MutualSecret) < MinSecretLength {
		log.Warn("mutual CHAP secret shorter than recommended", "for", who, "min_bytes", MinSecretLength)
	}
}

// chapStep is where a CHAP exchange stands.
type chapStep uint8

const (
	chapWantAlgorithm chapStep = iota // waiting for CHAP_A
	chapWantResponse                  // sent CHAP_C, waiting for CHAP_N/CHAP_R
	chapDone                          // authenticated
)

// chapAuth runs the target side of CHAP in the security stage.
type chapAuth struct {
	cfg       *CHAPConfig
	step      chapStep
	alg       int
	id        byte
	challenge []byte
}

// errAuth is a CHAP failure; the login answers 0x0201.
type errAuth struct{ why string }

func (e *errAuth) Error() string { return "iscsi: CHAP authentication failed: " + e.why }

// step consumes the CHAP keys of one login request and returns the keys to
// answer with. done reports a completed authentication.
func (a *chapAuth) handle(kvs []pdu.KV) (answer []pdu.KV, done bool, err error) {
	get := func(k string) (string, bool) { return pdu.Lookup(kvs, k) }
	switch a.step {
	case chapWantAlgorithm:
		v, ok := get("CHAP_A")
		if !ok {
			return nil, false, nil // still negotiating AuthMethod
		}
		alg, err := pdu.ChooseCHAPAlgorithm(v)
		if err != nil {
			// RFC 7143 12.1.3: answer CHAP_A=Reject; the initiator then fails.
			return nil, false, &errAuth{why: "no supported CHAP_A in " + strconv.Quote(v)}
		}
		a.alg = alg
		var idb [1]byte
		if _, err := rand.Read(idb[:]); err != nil {
			return nil, false, err
		}
		a.id = idb[0]
		a.challenge = make([]byte, pdu.CHAPDigestLen(alg))
		if _, err := rand.Read(a.challenge); err != nil {
			return nil, false, err
		}
		a.step = chapWantResponse
		return []pdu.KV{
			{Key: "CHAP_A", Value: strconv.Itoa(alg)},
			{Key: "CHAP_I", Value: strconv.Itoa(int(a.id))},
			{Key: "CHAP_C", Value: pdu.FormatHex(a.challenge)},
		}, false, nil
	case chapWantResponse:
		name, okN := get("CHAP_N")
		resp, okR := get("CHAP_R")
		if !okN || !okR {
			return nil, false, &errAuth{why: "CHAP_N/CHAP_R missing"}
		}
		r, err := pdu.ParseBinary(resp)
		if err != nil {
			return nil, false, &errAuth{why: "malformed CHAP_R"}
		}
		want, err := pdu.CHAPResponse(a.alg, a.id, []byte(a.cfg.Secret), a.challenge)
		if err != nil {
			return nil, false, err
		}
		nameOK := subtle.ConstantTimeCompare([]byte(name), []byte(a.cfg.User))
		respOK := subtle.ConstantTimeCompare(r, want)
		if nameOK&respOK != 1 {
			return nil, false, &errAuth{why: "wrong CHAP_N or CHAP_R for user " + strconv.Quote(name)}
		}
		ci, okI := get("CHAP_I")
		cc, okC := get("CHAP_C")
		if okI != okC {
			return nil, false, &errAuth{why: "mutual CHAP needs both CHAP_I and CHAP_C"}
		}
		a.step = chapDone
		if !okI {
			if a.cfg.RequireMutual {
				return nil, false, &errAuth{why: "mutual CHAP required"}
			}
			return nil, true, nil
		}
		if a.cfg.MutualSecret == "" {
			return nil, false, &errAuth{why: "initiator asked for mutual CHAP, none configured"}
		}
		id, err := pdu.ParseCHAPIdentifier(ci)
		if err != nil {
			return nil, false, &errAuth{why: "malformed CHAP_I"}
		}
		c, err := pdu.ParseBinary(cc)
		if err != nil || len(c) < 1 || len(c) > 1024 {
			return nil, false, &errAuth{why: "malformed CHAP_C"}
		}
		if subtle.ConstantTimeCompare(c, a.challenge) == 1 {
			return nil, false, &errAuth{why: "initiator reflected the target's challenge"}
		}
		mr, err := pdu.CHAPResponse(a.alg, id, []byte(a.cfg.MutualSecret), c)
		if err != nil {
			return nil, false, err
		}
		return []pdu.KV{
			{Key: "CHAP_N", Value: a.cfg.MutualUser},
			{Key: "CHAP_R", Value: pdu.FormatHex(mr)},
		}, true, nil
	}
	return nil, true, nil
}
