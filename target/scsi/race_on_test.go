//go:build race

package scsi_test

// raceEnabled: the race detector slows bulk data transfers down tenfold.
const raceEnabled = true
