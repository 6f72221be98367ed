package pdu

import (
	"fmt"
	"strconv"
)

// Params are the operational parameters of a session and connection in
// force after login (RFC 7143 section 13), with the RFC's defaults.
type Params struct {
	HeaderDigest bool
	DataDigest   bool
	// MaxRecvDataSegmentLength is the limit the initiator declared: the
	// largest data segment the target may send it.
	MaxRecvDataSegmentLength int
	// TargetMaxRecvDataSegmentLength is the limit the target declared: the
	// largest data segment the initiator may send it.
	TargetMaxRecvDataSegmentLength int
	MaxBurstLength                 int
	FirstBurstLength               int
	InitialR2T                     bool
	ImmediateData                  bool
	MaxOutstandingR2T              int
	DataPDUInOrder                 bool
	DataSequenceInOrder            bool
	DefaultTime2Wait               int
	DefaultTime2Retain             int
	ErrorRecoveryLevel             int
	MaxConnections                 int
}

// DefaultParams returns the RFC 7143 defaults.
func DefaultParams() Params {
	return Params{
		MaxRecvDataSegmentLength:       8192,
		TargetMaxRecvDataSegmentLength: 8192,
		MaxBurstLength:                 262144,
		FirstBurstLength:               65536,
		InitialR2T:                     true,
		ImmediateData:                  true,
		MaxOutstandingR2T:              1,
		DataPDUInOrder:                 true,
		DataSequenceInOrder:            true,
		DefaultTime2Wait:               2,
		DefaultTime2Retain:             20,
		ErrorRecoveryLevel:             0,
		MaxConnections:                 1,
	}
}

// Set applies a negotiated result. MaxRecvDataSegmentLength here is the
// initiator's declaration; the target's is set directly by its owner.
// Keys that are not parameters are ignored.
func (p *Params) Set(key, value string) error {
	def, ok := LookupKey(key)
	if !ok {
		return nil
	}
	num := func(dst *int) error {
		n, err := ParseNumberRange(value, def.Min, def.Max)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		*dst = int(n)
		return nil
	}
	boolean := func(dst *bool) error {
		b, err := ParseBool(value)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		*dst = b
		return nil
	}
	digest := func(dst *bool) error {
		switch value {
		case "None":
			*dst = false
		case "CRC32C":
			*dst = true
		default:
			return fmt.Errorf("%s: %w: %q", key, ErrValueFormat, value)
		}
		return nil
	}
	switch key {
	case "HeaderDigest":
		return digest(&p.HeaderDigest)
	case "DataDigest":
		return digest(&p.DataDigest)
	case "MaxRecvDataSegmentLength":
		return num(&p.MaxRecvDataSegmentLength)
	case "MaxBurstLength":
		return num(&p.MaxBurstLength)
	case "FirstBurstLength":
		return num(&p.FirstBurstLength)
	case "InitialR2T":
		return boolean(&p.InitialR2T)
	case "ImmediateData":
		return boolean(&p.ImmediateData)
	case "MaxOutstandingR2T":
		return num(&p.MaxOutstandingR2T)
	case "DataPDUInOrder":
		return boolean(&p.DataPDUInOrder)
	case "DataSequenceInOrder":
		return boolean(&p.DataSequenceInOrder)
	case "DefaultTime2Wait":
		return num(&p.DefaultTime2Wait)
	case "DefaultTime2Retain":
		return num(&p.DefaultTime2Retain)
	case "ErrorRecoveryLevel":
		return num(&p.ErrorRecoveryLevel)
	case "MaxConnections":
		return num(&p.MaxConnections)
	}
	return nil
}

// KVs returns the parameters as key=value pairs (for logs and snapshots).
func (p *Params) KVs() []KV {
	d := func(b bool) string {
		if b {
			return "CRC32C"
		}
		return "None"
	}
	i := strconv.Itoa
	return []KV{
		{"HeaderDigest", d(p.HeaderDigest)}, {"DataDigest", d(p.DataDigest)},
		{"MaxRecvDataSegmentLength", i(p.MaxRecvDataSegmentLength)},
		{"TargetMaxRecvDataSegmentLength", i(p.TargetMaxRecvDataSegmentLength)},
		{"MaxBurstLength", i(p.MaxBurstLength)}, {"FirstBurstLength", i(p.FirstBurstLength)},
		{"InitialR2T", FormatBool(p.InitialR2T)}, {"ImmediateData", FormatBool(p.ImmediateData)},
		{"MaxOutstandingR2T", i(p.MaxOutstandingR2T)},
		{"DataPDUInOrder", FormatBool(p.DataPDUInOrder)},
		{"DataSequenceInOrder", FormatBool(p.DataSequenceInOrder)},
		{"DefaultTime2Wait", i(p.DefaultTime2Wait)}, {"DefaultTime2Retain", i(p.DefaultTime2Retain)},
		{"ErrorRecoveryLevel", i(p.ErrorRecoveryLevel)}, {"MaxConnections", i(p.MaxConnections)},
	}
}
