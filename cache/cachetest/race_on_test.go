//go:build race

package cachetest_test

// raceEnabled: the race detector slows these data-heavy tests tenfold;
// they run smaller under it.
const raceEnabled = true
