package pdu

import (
	"errors"
	"fmt"
)

// Sentinel errors. Decoders and readers wrap them with %w; test with errors.Is.
var (
	// ErrHeaderDigest: the header digest did not match. At ErrorRecoveryLevel
	// 0 the connection must be dropped (framing can no longer be trusted).
	ErrHeaderDigest = errors.New("pdu: header digest error")
	// ErrDataDigest: the data digest did not match. Framing is intact: the
	// PDU was consumed whole and can be rejected with reason "data digest error".
	ErrDataDigest = errors.New("pdu: data digest error")
	// ErrTooLarge: a length field exceeds its cap. When returned by
	// Reader.ReadHeader for the data segment, framing is intact and the data
	// can be discarded with Reader.Discard.
	ErrTooLarge = errors.New("pdu: length exceeds limit")
	// ErrBadOpcode: the opcode is unknown or not valid in this direction.
	ErrBadOpcode = errors.New("pdu: bad opcode")
	// ErrTruncated: the input ended inside a PDU or field.
	ErrTruncated = errors.New("pdu: truncated")
	// ErrInvalidField: a field holds a value the RFC does not allow.
	ErrInvalidField = errors.New("pdu: invalid field")

	// ErrKeyFormat: malformed key=value text (no '=', bad key name).
	ErrKeyFormat = errors.New("pdu: malformed key=value text")
	// ErrKeyDuplicate: a key appears twice in one negotiation sequence.
	ErrKeyDuplicate = errors.New("pdu: duplicate key")
	// ErrValueFormat: a value does not parse as its type.
	ErrValueFormat = errors.New("pdu: malformed value")
	// ErrValueRange: a numerical value is outside its allowed range.
	ErrValueRange = errors.New("pdu: value out of range")
)

// OpcodeError reports a BHS whose opcode did not match the decoder used.
type OpcodeError struct {
	Want, Got Opcode
}

func (e *OpcodeError) Error() string {
	return fmt.Sprintf("pdu: opcode %v, want %v", e.Got, e.Want)
}

// Unwrap makes errors.Is(err, ErrBadOpcode) true.
func (e *OpcodeError) Unwrap() error { return ErrBadOpcode }
