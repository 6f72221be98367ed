package initiator

import (
	"errors"
	"fmt"

	"github.com/lunway/lunway/target/pdu"
)

// Errors.
var (
	// ErrClosed: the session ended (closed, logged out or connection lost).
	ErrClosed = errors.New("initiator: session closed")
	// ErrProtocol: the target broke the protocol.
	ErrProtocol = errors.New("initiator: protocol error")
	// ErrAuth: the target failed mutual CHAP authentication.
	ErrAuth = errors.New("initiator: target authentication failed")
	// ErrNegotiation: login negotiation failed on the initiator side.
	ErrNegotiation = errors.New("initiator: negotiation failed")
)

// LoginError is a login refused by the target with a non-zero status.
type LoginError struct {
	// Status is StatusClass<<8 | StatusDetail (pdu.LoginTargetNotFound...).
	Status uint16
}

func (e *LoginError) Error() string {
	return fmt.Sprintf("initiator: login refused: status class 0x%02x detail 0x%02x (%s)",
		e.Status>>8, e.Status&0xff, loginStatusText(e.Status))
}

func loginStatusText(s uint16) string {
	switch s {
	case pdu.LoginAuthFailure:
		return "authentication failure"
	case pdu.LoginAuthorizationFailure:
		return "authorization failure"
	case pdu.LoginTargetNotFound:
		return "target not found"
	case pdu.LoginTargetRemoved:
		return "target removed"
	case pdu.LoginUnsupportedVersion:
		return "unsupported version"
	case pdu.LoginTooManyConnections:
		return "too many connections"
	case pdu.LoginMissingParameter:
		return "missing parameter"
	case pdu.LoginSessionDoesNotExist:
		return "session does not exist"
	case pdu.LoginServiceUnavailable:
		return "service unavailable"
	case pdu.LoginOutOfResources:
		return "out of resources"
	}
	if s>>8 == 2 {
		return "initiator error"
	}
	return "target error"
}

// RejectError reports a request the target rejected (Reject PDU).
type RejectError struct {
	Reason uint8
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("initiator: request rejected, reason 0x%02x", e.Reason)
}

// StatusError is a SCSI command that completed with a status other than GOOD.
type StatusError struct {
	Status uint8
	Sense  Sense
}

func (e *StatusError) Error() string {
	if e.Status == 0x02 {
		return fmt.Sprintf("initiator: CHECK CONDITION %v", e.Sense)
	}
	return fmt.Sprintf("initiator: SCSI status 0x%02x", e.Status)
}

// TMFError is a task management function that did not complete.
type TMFError struct {
	Response uint8
}

func (e *TMFError) Error() string {
	return fmt.Sprintf("initiator: task management response %d", e.Response)
}
