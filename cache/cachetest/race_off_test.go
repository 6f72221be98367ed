//go:build !race

package cachetest_test

const raceEnabled = false
