//go:build race

package blockmap

// raceEnabled: the race detector slows the heavy randomized tests about
// tenfold, so they run smaller variants (CI runs go test -race ./...).
const raceEnabled = true
