package pdu

import (
	"fmt"
	"strconv"
)

// KeyType is how a key's value is negotiated (RFC 7143 6.2).
type KeyType uint8

// Key types.
const (
	// Declarative keys are announced, not negotiated: no answer.
	Declarative KeyType = iota
	// NumberMin: the result is the minimum of offer and local value.
	NumberMin
	// NumberMax: the result is the maximum.
	NumberMax
	// BoolAnd: the result is the AND of offer and local value.
	BoolAnd
	// BoolOr: the result is the OR.
	BoolOr
	// List: the offer is a list in order of preference; the answer is the
	// first offered value the answerer supports.
	List
	// Special keys (SessionType, SendTargets, AuthMethod, CHAP_*) are
	// handled by name by the login and text code.
	Special
)

// Phase says when a key may be negotiated.
type Phase uint8

// Phases.
const (
	// LoginOnly keys are negotiated only during login (LO).
	LoginOnly Phase = iota
	// FullFeature keys may also be sent in Text requests.
	FullFeature
)

// KeyDef describes an RFC 7143 key.
type KeyDef struct {
	Name string
	Type KeyType
	// Min and Max bound numerical values.
	Min, Max uint64
	// Default is the value in force when the key is not negotiated.
	Default string
	Phase   Phase
}

// keyDefs is the table of RFC 7143 section 13 keys that are negotiated
// generically. It is read-only.
var keyDefs = [...]KeyDef{
	{Name: "HeaderDigest", Type: List, Default: "None", Phase: LoginOnly},
	{Name: "DataDigest", Type: List, Default: "None", Phase: LoginOnly},
	{Name: "MaxConnections", Type: NumberMin, Min: 1, Max: 65535, Default: "1", Phase: LoginOnly},
	{Name: "InitialR2T", Type: BoolOr, Default: "Yes", Phase: LoginOnly},
	{Name: "ImmediateData", Type: BoolAnd, Default: "Yes", Phase: LoginOnly},
	{Name: "MaxRecvDataSegmentLength", Type: Declarative, Min: 512, Max: 1<<24 - 1, Default: "8192", Phase: FullFeature},
	{Name: "MaxBurstLength", Type: NumberMin, Min: 512, Max: 1<<24 - 1, Default: "262144", Phase: LoginOnly},
	{Name: "FirstBurstLength", Type: NumberMin, Min: 512, Max: 1<<24 - 1, Default: "65536", Phase: LoginOnly},
	{Name: "DefaultTime2Wait", Type: NumberMax, Min: 0, Max: 3600, Default: "2", Phase: LoginOnly},
	{Name: "DefaultTime2Retain", Type: NumberMin, Min: 0, Max: 3600, Default: "20", Phase: LoginOnly},
	{Name: "MaxOutstandingR2T", Type: NumberMin, Min: 1, Max: 65535, Default: "1", Phase: LoginOnly},
	{Name: "DataPDUInOrder", Type: BoolOr, Default: "Yes", Phase: LoginOnly},
	{Name: "DataSequenceInOrder", Type: BoolOr, Default: "Yes", Phase: LoginOnly},
	{Name: "ErrorRecoveryLevel", Type: NumberMin, Min: 0, Max: 2, Default: "0", Phase: LoginOnly},
	{Name: "IFMarker", Type: BoolAnd, Default: "No", Phase: LoginOnly},
	{Name: "OFMarker", Type: BoolAnd, Default: "No", Phase: LoginOnly},
	{Name: "InitiatorName", Type: Declarative, Default: "", Phase: LoginOnly},
	{Name: "InitiatorAlias", Type: Declarative, Default: "", Phase: FullFeature},
	{Name: "TargetName", Type: Declarative, Default: "", Phase: LoginOnly},
	{Name: "TargetAlias", Type: Declarative, Default: "", Phase: FullFeature},
	{Name: "TargetAddress", Type: Declarative, Default: "", Phase: FullFeature},
	{Name: "TargetPortalGroupTag", Type: Declarative, Min: 0, Max: 65535, Default: "", Phase: LoginOnly},
	{Name: "SessionType", Type: Special, Default: "Normal", Phase: LoginOnly},
	{Name: "SendTargets", Type: Special, Default: "", Phase: FullFeature},
	{Name: "AuthMethod", Type: Special, Default: "None", Phase: LoginOnly},
}

// LookupKey returns the definition of a generically negotiated key.
func LookupKey(name string) (KeyDef, bool) {
	for _, d := range keyDefs {
		if d.Name == name {
			return d, true
		}
	}
	return KeyDef{}, false
}

// Keys returns the definitions of every known key (a copy).
func Keys() []KeyDef { return append([]KeyDef(nil), keyDefs[:]...) }

// Answer computes the responder's answer to an offered value given the
// responder's own value (for List keys, local is the responder's list of
// supported values in its order; the offer's order wins). It returns the
// negotiated result, which is also the answer to send. A malformed or out
// of range offer yields (RejectValue, error): send "key=Reject" and keep the
// default.
func Answer(def KeyDef, offered, local string) (string, error) {
	switch def.Type {
	case NumberMin, NumberMax:
		o, err := ParseNumberRange(offered, def.Min, def.Max)
		if err != nil {
			return RejectValue, fmt.Errorf("%s: %w", def.Name, err)
		}
		l, err := ParseNumber(local)
		if err != nil {
			return RejectValue, fmt.Errorf("%s local: %w", def.Name, err)
		}
		if def.Type == NumberMin {
			return strconv.FormatUint(min(o, l), 10), nil
		}
		return strconv.FormatUint(max(o, l), 10), nil
	case BoolAnd, BoolOr:
		o, err := ParseBool(offered)
		if err != nil {
			return RejectValue, fmt.Errorf("%s: %w", def.Name, err)
		}
		l, err := ParseBool(local)
		if err != nil {
			return RejectValue, fmt.Errorf("%s local: %w", def.Name, err)
		}
		if def.Type == BoolAnd {
			return FormatBool(o && l), nil
		}
		return FormatBool(o || l), nil
	case List:
		offers, err := SplitList(offered)
		if err != nil {
			return RejectValue, fmt.Errorf("%s: %w", def.Name, err)
		}
		supported, err := SplitList(local)
		if err != nil {
			return RejectValue, fmt.Errorf("%s local: %w", def.Name, err)
		}
		for _, o := range offers {
			for _, s := range supported {
				if o == s {
					return o, nil
				}
			}
		}
		return RejectValue, fmt.Errorf("%s: %w: no common value in %q", def.Name, ErrValueRange, offered)
	case Declarative:
		if def.Max > 0 {
			if _, err := ParseNumberRange(offered, def.Min, def.Max); err != nil {
				return RejectValue, fmt.Errorf("%s: %w", def.Name, err)
			}
		}
		return offered, nil
	}
	return RejectValue, fmt.Errorf("%s: %w: not negotiated generically", def.Name, ErrValueFormat)
}

// Accept checks the answer to a value this side offered and returns the
// negotiated result. An answer the rules do not allow (a larger number for
// a NumberMin key, Yes to an AND key offered as No, a value not in the
// offered list) is an error: the offering side fails the negotiation.
// NotUnderstood, Irrelevant and Reject leave the default in force.
func Accept(def KeyDef, offered, answer string) (string, error) {
	switch answer {
	case NotUnderstood, Irrelevant, RejectValue:
		return def.Default, nil
	}
	switch def.Type {
	case NumberMin, NumberMax:
		a, err := ParseNumberRange(answer, def.Min, def.Max)
		if err != nil {
			return "", fmt.Errorf("%s: %w", def.Name, err)
		}
		o, err := ParseNumber(offered)
		if err != nil {
			return "", fmt.Errorf("%s offered: %w", def.Name, err)
		}
		if def.Type == NumberMin && a > o || def.Type == NumberMax && a < o {
			return "", fmt.Errorf("%s: %w: answer %d to offer %d", def.Name, ErrValueRange, a, o)
		}
		return answer, nil
	case BoolAnd, BoolOr:
		a, err := ParseBool(answer)
		if err != nil {
			return "", fmt.Errorf("%s: %w", def.Name, err)
		}
		o, err := ParseBool(offered)
		if err != nil {
			return "", fmt.Errorf("%s offered: %w", def.Name, err)
		}
		if def.Type == BoolAnd && !o && a || def.Type == BoolOr && o && !a {
			return "", fmt.Errorf("%s: %w: answer %s to offer %s", def.Name, ErrValueRange, answer, offered)
		}
		return answer, nil
	case List:
		offers, err := SplitList(offered)
		if err != nil {
			return "", fmt.Errorf("%s offered: %w", def.Name, err)
		}
		for _, o := range offers {
			if o == answer {
				return answer, nil
			}
		}
		return "", fmt.Errorf("%s: %w: answer %q not offered", def.Name, ErrValueRange, answer)
	}
	return answer, nil
}
