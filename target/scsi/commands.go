package scsi

import (
	"context"
	"encoding/binary"
	"errors"

	"github.com/lunway/lunway/blockdev"
)

// Sense keys.
const (
	senseNoSense        = 0x0
	senseNotReady       = 0x2
	senseMediumError    = 0x3
	senseHardwareError  = 0x4
	senseIllegalRequest = 0x5
	senseUnitAttention  = 0x6
	senseDataProtect    = 0x7
	senseAbortedCommand = 0xb
)

// asc is an additional sense code and qualifier.
type asc uint16

const (
	ascInvalidOpcode       asc = 0x2000
	ascLBAOutOfRange       asc = 0x2100
	ascInvalidFieldInCDB   asc = 0x2400
	ascLUNotSupported      asc = 0x2500
	ascWriteProtected      asc = 0x2700
	ascUnrecoveredRead     asc = 0x1100
	ascInternalTargetFault asc = 0x4400
)

// checkCondition returns a CHECK CONDITION result with fixed-format sense.
func checkCondition(key uint8, code asc) Result {
	s := make([]byte, 18)
	s[0] = 0x70
	s[2] = key
	s[7] = 10
	s[12] = byte(code >> 8)
	s[13] = byte(code)
	return Result{Status: StatusCheckCondition, Sense: s}
}

// errorResult maps a storage error to a result. It is the one place where
// storage errors become SCSI status and sense.
func errorResult(err error) Result {
	switch {
	case errors.Is(err, blockdev.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return Result{Status: StatusBusy}
	case errors.Is(err, blockdev.ErrOutOfRange):
		return checkCondition(senseIllegalRequest, ascLBAOutOfRange)
	case errors.Is(err, blockdev.ErrReadOnly):
		return checkCondition(senseDataProtect, ascWriteProtected)
	case errors.Is(err, blockdev.ErrCorrupt):
		return checkCondition(senseMediumError, ascUnrecoveredRead)
	}
	return checkCondition(senseHardwareError, ascInternalTargetFault)
}

func (t *Target) dispatch(ctx context.Context, lu *LU, cmd *Command) Result {
	op := cmd.CDB[0]
	if lu == nil {
		switch op {
		case 0x12: // INQUIRY: peripheral qualifier 011b, no device
			data := make([]byte, 36)
			data[0] = 0x7f
			return dataIn(data, cmd.CDB[3:5])
		case 0xa0:
			return t.reportLUNs(cmd)
		}
		return checkCondition(senseIllegalRequest, ascLUNotSupported)
	}
	info := lu.dev.Info()
	switch op {
	case 0x00: // TEST UNIT READY
		return Result{}
	case 0x12: // INQUIRY (standard data only)
		data := make([]byte, 36)
		data[2] = 0x06
		data[3] = 0x02
		data[4] = 31
		copy(data[8:16], pad(lu.opts.VendorID, 8))
		copy(data[16:32], pad(lu.opts.ProductID, 16))
		copy(data[32:36], pad(lu.opts.Revision, 4))
		return dataIn(data, cmd.CDB[3:5])
	case 0x25: // READ CAPACITY (10)
		data := make([]byte, 8)
		last := info.Blocks() - 1
		if last > 0xffffffff {
			last = 0xffffffff
		}
		binary.BigEndian.PutUint32(data[0:], uint32(last))
		binary.BigEndian.PutUint32(data[4:], uint32(info.LogicalBlockSize))
		return Result{Data: data, TransferLen: 8}
	case 0xa0:
		return t.reportLUNs(cmd)
	case 0x28, 0x88: // READ (10), READ (16)
		lba, n := rwRange(cmd.CDB)
		off, length := int64(lba)*int64(info.LogicalBlockSize), int64(n)*int64(info.LogicalBlockSize)
		if err := blockdev.CheckRange(info, off, length); err != nil {
			return errorResult(err)
		}
		buf := make([]byte, length)
		if err := lu.dev.ReadAt(ctx, buf, off); err != nil {
			return errorResult(err)
		}
		return Result{Data: buf, TransferLen: uint32(length)}
	case 0x2a, 0x8a: // WRITE (10), WRITE (16)
		lba, n := rwRange(cmd.CDB)
		off, length := int64(lba)*int64(info.LogicalBlockSize), int64(n)*int64(info.LogicalBlockSize)
		if err := blockdev.CheckRange(info, off, length); err != nil {
			return errorResult(err)
		}
		if int64(len(cmd.DataOut)) < length {
			return checkCondition(senseIllegalRequest, ascInvalidFieldInCDB)
		}
		var flags blockdev.WriteFlags
		if cmd.CDB[1]&0x08 != 0 {
			flags |= blockdev.FUA
		}
		if err := lu.dev.WriteAt(ctx, cmd.DataOut[:length], off, flags); err != nil {
			return errorResult(err)
		}
		return Result{TransferLen: uint32(length)}
	case 0x35, 0x91: // SYNCHRONIZE CACHE (10/16)
		if err := lu.dev.Flush(ctx); err != nil {
			return errorResult(err)
		}
		return Result{}
	}
	return checkCondition(senseIllegalRequest, ascInvalidOpcode)
}

func (t *Target) reportLUNs(cmd *Command) Result {
	luns := t.LUNs()
	data := make([]byte, 8+8*len(luns))
	binary.BigEndian.PutUint32(data, uint32(8*len(luns)))
	for i, lun := range luns {
		b := EncodeLUN(lun)
		copy(data[8+8*i:], b[:])
	}
	if len(cmd.CDB) < 10 {
		return checkCondition(senseIllegalRequest, ascInvalidFieldInCDB)
	}
	return dataIn(data, cmd.CDB[6:10])
}

// dataIn truncates data to the big-endian allocation length in alloc.
func dataIn(data []byte, alloc []byte) Result {
	var n uint32
	for _, b := range alloc {
		n = n<<8 | uint32(b)
	}
	if uint32(len(data)) > n {
		data = data[:n]
	}
	return Result{Data: data, TransferLen: uint32(len(data))}
}

func rwRange(cdb []byte) (lba uint64, blocks uint32) {
	switch cdb[0] {
	case 0x28, 0x2a:
		return uint64(binary.BigEndian.Uint32(cdb[2:])), uint32(binary.BigEndian.Uint16(cdb[7:]))
	case 0x88, 0x8a:
		return binary.BigEndian.Uint64(cdb[2:]), binary.BigEndian.Uint32(cdb[10:])
	}
	return 0, 0
}

func pad(s string, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = ' '
	}
	copy(b, s)
	return b
}
