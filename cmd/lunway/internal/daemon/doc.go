// Package daemon wires Lunway's pieces from configuration: it opens each
// LUN's backend, builds the SCSI targets and logical units, listens on the
// portals, serves the management API and the metrics, and applies live
// changes. It is the only code that names concrete backends.
//
// Every change, at start and later through the API, is a difference
// between two validated configurations applied as one transaction
// (change.go): what can fail is done first and undone on failure, the
// configuration file is saved, and only then are things closed that
// cannot be reopened (sessions, listeners, devices).
package daemon
