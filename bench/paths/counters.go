package paths

import (
	"context"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockmap"
	"github.com/lunway/lunway/target/scsi"
)

// Counters are Lunway's own counters for one LUN: the SCSI commands the
// LU served (what crossed the SAN: scsi.LUStats) and the I/O its device
// did on the backend (blockmap.Stats for a volume; a counting wrapper
// around a plain file device, which has no counters of its own).
type Counters struct {
	SCSIReads      uint64 `json:"scsi_reads"`
	SCSIWrites     uint64 `json:"scsi_writes"`
	SCSIOthers     uint64 `json:"scsi_others"` // SYNCHRONIZE CACHE, UNMAP, INQUIRY...
	SCSIReadBytes  uint64 `json:"scsi_read_bytes"`
	SCSIWriteBytes uint64 `json:"scsi_write_bytes"`

	BackendReadOps    int64 `json:"backend_read_ops"`
	BackendReadBytes  int64 `json:"backend_read_bytes"`
	BackendWriteOps   int64 `json:"backend_write_ops"`
	BackendWriteBytes int64 `json:"backend_write_bytes"`
	BackendFlushes    int64 `json:"backend_flushes"`
}

// Sub returns c - before: what happened between two snapshots.
func (c Counters) Sub(before Counters) Counters {
	return Counters{
		SCSIReads: c.SCSIReads - before.SCSIReads, SCSIWrites: c.SCSIWrites - before.SCSIWrites,
		SCSIOthers: c.SCSIOthers - before.SCSIOthers, SCSIReadBytes: c.SCSIReadBytes - before.SCSIReadBytes,
		SCSIWriteBytes: c.SCSIWriteBytes - before.SCSIWriteBytes,
		BackendReadOps: c.BackendReadOps - before.BackendReadOps, BackendReadBytes: c.BackendReadBytes - before.BackendReadBytes,
		BackendWriteOps: c.BackendWriteOps - before.BackendWriteOps, BackendWriteBytes: c.BackendWriteBytes - before.BackendWriteBytes,
		BackendFlushes: c.BackendFlushes - before.BackendFlushes,
	}
}

// fromStats fills the counters from Lunway's snapshots.
func fromStats(lu scsi.LUStats, vol *blockmap.Stats, file *ioCounts) Counters {
	c := Counters{
		SCSIReads: lu.Reads, SCSIWrites: lu.Writes, SCSIOthers: lu.Others,
		SCSIReadBytes: lu.ReadBytes, SCSIWriteBytes: lu.WriteBytes,
	}
	switch {
	case vol != nil:
		c.BackendReadOps, c.BackendReadBytes = vol.BackendReadOps, vol.BackendReadBytes
		c.BackendWriteOps, c.BackendWriteBytes = vol.BackendWriteOps, vol.BackendWriteBytes
		c.BackendFlushes = vol.Flushes
	case file != nil:
		c.BackendReadOps, c.BackendReadBytes = file.readOps.Load(), file.readBytes.Load()
		c.BackendWriteOps, c.BackendWriteBytes = file.writeOps.Load(), file.writeBytes.Load()
		c.BackendFlushes = file.flushes.Load()
	}
	return c
}

// Amplification is what one guest operation cost below it.
type Amplification struct {
	// SANCmdsPerOp is SCSI commands (all classes) per guest read or write.
	SANCmdsPerOp float64 `json:"san_cmds_per_op"`
	// SANWritesPerWrite is SCSI write commands per guest write.
	SANWritesPerWrite float64 `json:"san_writes_per_write"`
	// SANBytesPerByte is SCSI data (read + write) per guest byte.
	SANBytesPerByte float64 `json:"san_bytes_per_byte"`
	// BackendWritesPerWrite is backend write operations per guest write.
	BackendWritesPerWrite float64 `json:"backend_writes_per_write"`
	// BackendWriteBytesPerByte is backend bytes written per guest byte
	// written (write amplification).
	BackendWriteBytesPerByte float64 `json:"backend_write_bytes_per_byte"`
	// BackendReadsPerRead is backend read operations per guest read.
	BackendReadsPerRead float64 `json:"backend_reads_per_read"`
	// BackendOpsPerOp is backend operations (reads, writes, flushes) per
	// guest operation.
	BackendOpsPerOp float64 `json:"backend_ops_per_op"`
}

// Amplify relates the counters of a run to what the guest did; a ratio
// whose denominator is zero is 0.
func Amplify(m Measurement, d Counters) Amplification {
	div := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	ops := float64(m.Ops())
	return Amplification{
		SANCmdsPerOp:             div(float64(d.SCSIReads+d.SCSIWrites+d.SCSIOthers), ops),
		SANWritesPerWrite:        div(float64(d.SCSIWrites), float64(m.Writes)),
		SANBytesPerByte:          div(float64(d.SCSIReadBytes+d.SCSIWriteBytes), float64(m.ReadBytes+m.WriteBytes)),
		BackendWritesPerWrite:    div(float64(d.BackendWriteOps), float64(m.Writes)),
		BackendWriteBytesPerByte: div(float64(d.BackendWriteBytes), float64(m.WriteBytes)),
		BackendReadsPerRead:      div(float64(d.BackendReadOps), float64(m.Reads)),
		BackendOpsPerOp:          div(float64(d.BackendReadOps+d.BackendWriteOps+d.BackendFlushes), ops),
	}
}

// ioCounts counts what a device below an LU did.
type ioCounts struct {
	readOps, readBytes, writeOps, writeBytes, flushes atomic.Int64
}

// countingDevice counts the backend I/O of a device without counters of
// its own (blockdev/file). It passes only the base Device methods, so the
// LU sees no optional capabilities: every command reaches ReadAt, WriteAt
// or Flush and is counted.
type countingDevice struct {
	blockdev.Device
	n *ioCounts
}

func (d countingDevice) ReadAt(ctx context.Context, p []byte, off int64) error {
	d.n.readOps.Add(1)
	d.n.readBytes.Add(int64(len(p)))
	return d.Device.ReadAt(ctx, p, off)
}

func (d countingDevice) WriteAt(ctx context.Context, p []byte, off int64, f blockdev.WriteFlags) error {
	d.n.writeOps.Add(1)
	d.n.writeBytes.Add(int64(len(p)))
	if f&blockdev.FUA != 0 {
		d.n.flushes.Add(1)
	}
	return d.Device.WriteAt(ctx, p, off, f)
}

func (d countingDevice) Flush(ctx context.Context) error {
	d.n.flushes.Add(1)
	return d.Device.Flush(ctx)
}

func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}
