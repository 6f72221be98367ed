package scsi

import (
	"context"
	"encoding/binary"
	"errors"

	"github.com/lunway/lunway/blockdev"
)

// Sense keys (SPC-4 table 27).
const (
	senseNoSense        = 0x0
	senseRecoveredError = 0x1
	senseNotReady       = 0x2
	senseMediumError    = 0x3
	senseHardwareError  = 0x4
	senseIllegalRequest = 0x5
	senseUnitAttention  = 0x6
	senseDataProtect    = 0x7
	senseCopyAborted    = 0xa
	senseAbortedCommand = 0xb
	senseMiscompare     = 0xe
)

// asc is an additional sense code (high byte) and qualifier (low byte).
type asc uint16

// Additional sense codes and qualifiers used by the device server (SPC-4 table 28).
const (
	ascNoAdditionalSense          asc = 0x0000
	ascLUNotReady                 asc = 0x0400
	ascLUNotReadyTransition       asc = 0x040a
	ascLUNotReadyStandby          asc = 0x040b
	ascLUNotReadyUnavailable      asc = 0x040c
	ascUnrecoveredRead            asc = 0x1100
	ascParamListLength            asc = 0x1a00
	ascMiscompareDuringVerify     asc = 0x1d00
	ascInvalidOpcode              asc = 0x2000
	ascLBAOutOfRange              asc = 0x2100
	ascInvalidFieldInCDB          asc = 0x2400
	ascLUNotSupported             asc = 0x2500
	ascInvalidFieldInParam        asc = 0x2600
	ascParamNotSupported          asc = 0x2601
	ascInvalidReleaseOfPR         asc = 0x2604
	ascWriteProtected             asc = 0x2700
	ascSoftwareWriteProtected     asc = 0x2702
	ascSpaceAllocFailedWP         asc = 0x2707
	ascPowerOnReset               asc = 0x2900
	ascPowerOnOccurred            asc = 0x2901
	ascBusReset                   asc = 0x2902
	ascBusDeviceReset             asc = 0x2903
	ascITNexusLoss                asc = 0x2907
	ascModeParamsChanged          asc = 0x2a01
	ascReservationsPreempted      asc = 0x2a03
	ascReservationsReleased       asc = 0x2a04
	ascRegistrationsPreempted     asc = 0x2a05
	ascAsymAccessStateChanged     asc = 0x2a06
	ascCapacityChanged            asc = 0x2a09
	ascCommandsClearedByOther     asc = 0x2f00
	ascSavingParamsNotSupported   asc = 0x3900
	ascReportedLUNsChanged        asc = 0x3f0e
	ascInternalTargetFault        asc = 0x4400
	ascMediumRemovalPrevented     asc = 0x5302
	ascInsufficientRegResources   asc = 0x5504
	ascCopyTargetDeviceNotReach   asc = 0x0d02
	ascTooManyTargetDescriptors   asc = 0x2606
	ascUnsupportedTargetDescType  asc = 0x2607
	ascTooManySegmentDescriptors  asc = 0x2608
	ascUnsupportedSegmentDescType asc = 0x2609
	ascInvalidTargetPortGroups    asc = 0x2600
)

// senseData is the content of one sense report before it is encoded in
// fixed or descriptor format.
type senseData struct {
	key       uint8
	asc       asc
	info      uint64 // INFORMATION field, valid when infoValid
	infoValid bool
	// sks is the 3-byte sense-key specific field including its SKSV bit
	// (0 when absent).
	sks uint32
}

// Fixed-format sense data (SPC-4 4.5.3), the 18 bytes this package emits:
//
//	byte 0      VALID(7) | response code 70h
//	byte 2      sense key (3:0)
//	bytes 3-6   INFORMATION (big endian)
//	byte 7      additional sense length (10)
//	bytes 8-11  command-specific information
//	bytes 12-13 ASC, ASCQ
//	bytes 15-17 SKSV(7 of byte 15) | sense-key specific
const fixedSenseLen = 18

// appendFixed appends fixed-format sense to b.
func (s senseData) appendFixed(b []byte) []byte {
	var f [fixedSenseLen]byte
	f[0] = 0x70
	if s.infoValid && s.info <= 0xffffffff {
		f[0] |= 0x80
		binary.BigEndian.PutUint32(f[3:], uint32(s.info))
	}
	f[2] = s.key & 0x0f
	f[7] = fixedSenseLen - 8
	f[12] = byte(s.asc >> 8)
	f[13] = byte(s.asc)
	if s.sks != 0 {
		f[15] = byte(s.sks >> 16)
		f[16] = byte(s.sks >> 8)
		f[17] = byte(s.sks)
	}
	return append(b, f[:]...)
}

// Descriptor-format sense data (SPC-4 4.5.2):
//
//	byte 0      response code 72h
//	byte 1      sense key
//	bytes 2-3   ASC, ASCQ
//	byte 7      additional sense length
//	then descriptors: information (type 00h, 12 bytes) and sense-key
//	specific (type 02h, 8 bytes) when present.
func (s senseData) appendDescriptor(b []byte) []byte {
	start := len(b)
	b = append(b, 0x72, s.key&0x0f, byte(s.asc>>8), byte(s.asc), 0, 0, 0, 0)
	if s.infoValid {
		b = append(b, 0x00, 0x0a, 0x80, 0)
		b = binary.BigEndian.AppendUint64(b, s.info)
	}
	if s.sks != 0 {
		b = append(b, 0x02, 0x06, 0, 0, byte(s.sks>>16), byte(s.sks>>8), byte(s.sks), 0)
	}
	b[start+7] = byte(len(b) - start - 8)
	return b
}

// encode returns the sense in descriptor format when desc is set (the
// control mode page's D_SENSE bit), else in fixed format.
func (s senseData) encode(desc bool) []byte {
	if desc {
		return s.appendDescriptor(make([]byte, 0, 28))
	}
	return s.appendFixed(make([]byte, 0, fixedSenseLen))
}

// Sense-key specific field pointer for ILLEGAL REQUEST (SPC-4 4.5.2.4.2):
// SKSV | C/D | BPV | bit pointer, then a 2-byte field pointer.
func fieldPointer(cdb bool, byteIdx int, bit int) uint32 {
	v := uint32(0x800000)
	if cdb {
		v |= 0x400000
	}
	if bit >= 0 && bit <= 7 {
		v |= 0x080000 | uint32(bit)<<16
	}
	return v | uint32(uint16(byteIdx))
}

// invalidCDB is INVALID FIELD IN CDB pointing at byte byteIdx, bit bit
// (bit < 0: no bit pointer).
func invalidCDB(byteIdx, bit int) senseData {
	return senseData{key: senseIllegalRequest, asc: ascInvalidFieldInCDB, sks: fieldPointer(true, byteIdx, bit)}
}

// invalidParam is INVALID FIELD IN PARAMETER LIST pointing at byte
// byteIdx of the parameter list.
func invalidParam(byteIdx, bit int) senseData {
	return senseData{key: senseIllegalRequest, asc: ascInvalidFieldInParam, sks: fieldPointer(false, byteIdx, bit)}
}

func illegal(a asc) senseData { return senseData{key: senseIllegalRequest, asc: a} }

// topBit returns the index of the highest set bit of b (b != 0).
func topBit(b byte) int {
	for i := 7; i > 0; i-- {
		if b&(1<<i) != 0 {
			return i
		}
	}
	return 0
}

// errorSense maps a storage error to status and sense. It is the one place
// where blockdev errors become SCSI; every handler funnels its Device
// errors through it (request.failErr, which also honours D_SENSE).
//
//   - ErrUnavailable and deadline expiries are transient backend trouble:
//     BUSY, which every initiator retries. Never LOGICAL UNIT NOT SUPPORTED
//     (25/00): hypervisors treat that as permanent device loss (ESXi marks
//     the path PDL and stops retrying) although the LU still exists.
//   - ErrClosed means the LU is being detached under a running command:
//     NOT READY, CAUSE NOT REPORTABLE (04/00), which initiators retry for a
//     bounded time.
//   - context.Canceled means the task was aborted: TASK ABORTED (the
//     transport drops the response of an aborted task anyway).
//   - ErrOutOfRange → 21/00, ErrReadOnly → DATA PROTECT 27/00, ErrCorrupt →
//     MEDIUM ERROR 11/00, ErrNoSpace → DATA PROTECT 27/07 (thin
//     provisioning hard threshold), *MiscompareError → MISCOMPARE 1D/00 with
//     the offset in INFORMATION, anything else → HARDWARE ERROR 44/00.
func errorSense(err error) (Status, senseData) {
	var mis *blockdev.MiscompareError
	switch {
	case errors.As(err, &mis):
		return StatusCheckCondition, senseData{key: senseMiscompare, asc: ascMiscompareDuringVerify,
			info: uint64(mis.Offset), infoValid: true}
	case errors.Is(err, blockdev.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return StatusBusy, senseData{}
	case errors.Is(err, context.Canceled):
		return StatusTaskAborted, senseData{}
	case errors.Is(err, blockdev.ErrClosed):
		return StatusCheckCondition, senseData{key: senseNotReady, asc: ascLUNotReady}
	case errors.Is(err, blockdev.ErrOutOfRange):
		return StatusCheckCondition, illegal(ascLBAOutOfRange)
	case errors.Is(err, blockdev.ErrReadOnly):
		return StatusCheckCondition, senseData{key: senseDataProtect, asc: ascWriteProtected}
	case errors.Is(err, blockdev.ErrNoSpace):
		return StatusCheckCondition, senseData{key: senseDataProtect, asc: ascSpaceAllocFailedWP}
	case errors.Is(err, blockdev.ErrCorrupt):
		return StatusCheckCondition, senseData{key: senseMediumError, asc: ascUnrecoveredRead}
	}
	return StatusCheckCondition, senseData{key: senseHardwareError, asc: ascInternalTargetFault}
}

// SenseInfo is a decoded view of sense data, for tests and logs.
type SenseInfo struct {
	Key, ASC, ASCQ uint8
	// Info is the INFORMATION field, valid when InfoValid.
	Info      uint64
	InfoValid bool
	// SKS is the sense-key specific field (3 bytes, SKSV in bit 23), 0 if absent.
	SKS uint32
}

// ParseSense decodes fixed (70h/71h) or descriptor (72h/73h) sense data.
// It never panics; ok is false when b is not sense data it understands.
func ParseSense(b []byte) (s SenseInfo, ok bool) {
	if len(b) < 1 {
		return s, false
	}
	switch b[0] & 0x7f {
	case 0x70, 0x71:
		if len(b) < 14 {
			return s, false
		}
		s.Key, s.ASC, s.ASCQ = b[2]&0x0f, b[12], b[13]
		if b[0]&0x80 != 0 {
			s.Info, s.InfoValid = uint64(binary.BigEndian.Uint32(b[3:7])), true
		}
		if len(b) >= 18 && b[15]&0x80 != 0 {
			s.SKS = uint32(b[15])<<16 | uint32(b[16])<<8 | uint32(b[17])
		}
		return s, true
	case 0x72, 0x73:
		if len(b) < 8 {
			return s, false
		}
		s.Key, s.ASC, s.ASCQ = b[1]&0x0f, b[2], b[3]
		d := b[8:]
		if n := int(b[7]); n < len(d) {
			d = d[:n]
		}
		for len(d) >= 2 {
			n := 2 + int(d[1])
			if n > len(d) {
				break
			}
			switch {
			case d[0] == 0x00 && n >= 12:
				s.Info, s.InfoValid = binary.BigEndian.Uint64(d[4:12]), d[2]&0x80 != 0
			case d[0] == 0x02 && n >= 7 && d[4]&0x80 != 0:
				s.SKS = uint32(d[4])<<16 | uint32(d[5])<<8 | uint32(d[6])
			}
			d = d[n:]
		}
		return s, true
	}
	return s, false
}
