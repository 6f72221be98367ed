//go:build race

package s3_test

// raceEnabled: the race detector makes the SDK several times slower, so
// tests that repeat a suite run one variant of it.
const raceEnabled = true
