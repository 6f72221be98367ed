// Package blockdev is the contract between the SCSI target and the storage
// beneath a logical unit: the Device interface, its optional capabilities
// (found by type assertion), and the sentinel errors every storage layer
// returns so that the target can map them to SCSI sense in one place.
//
// Implementations live in subpackages (file, mem) and elsewhere (blockmap,
// backend/rbd); blockdevtest is the conformance suite they all pass.
package blockdev
