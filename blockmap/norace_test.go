//go:build !race

package blockmap

const raceEnabled = false
