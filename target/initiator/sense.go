package initiator

import "fmt"

// Sense is the decoded core of SCSI sense data.
type Sense struct {
	Key  uint8
	ASC  uint8
	ASCQ uint8
	// Raw is the whole sense data.
	Raw []byte
}

// Sense keys used by helpers.
const (
	SenseNoSense        = 0x0
	SenseNotReady       = 0x2
	SenseMediumError    = 0x3
	SenseHardwareError  = 0x4
	SenseIllegalRequest = 0x5
	SenseUnitAttention  = 0x6
	SenseDataProtect    = 0x7
	SenseAbortedCommand = 0xb
	SenseMiscompare     = 0xe
)

func (s Sense) String() string {
	return fmt.Sprintf("sense key 0x%x asc 0x%02x ascq 0x%02x", s.Key, s.ASC, s.ASCQ)
}

// ParseSense decodes fixed (0x70/0x71) or descriptor (0x72/0x73) sense data.
func ParseSense(b []byte) (Sense, bool) {
	s := Sense{Raw: b}
	if len(b) < 1 {
		return s, false
	}
	switch b[0] & 0x7f {
	case 0x70, 0x71:
		if len(b) < 14 {
			if len(b) >= 3 {
				s.Key = b[2] & 0x0f
				return s, true
			}
			return s, false
		}
		s.Key, s.ASC, s.ASCQ = b[2]&0x0f, b[12], b[13]
		return s, true
	case 0x72, 0x73:
		if len(b) < 4 {
			return s, false
		}
		s.Key, s.ASC, s.ASCQ = b[1]&0x0f, b[2], b[3]
		return s, true
	}
	return s, false
}
