package main

import (
	"errors"
	"io"
	"testing"
)

// TestBenchPathsUsage checks that `lunway bench paths` refuses bad flags as
// usage errors (exit status 2) before starting anything, and that `lunway
// bench URL` still takes its URL next to the subcommand.
func TestBenchPathsUsage(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "paths", "--span", "3GiB"},
		{"bench", "paths", "--paths", "nfs"},
		{"bench", "paths", "--workloads", "nothing-matches"},
		{"bench", "paths", "--size", "lots"},
		{"bench", "paths", "extra-arg"},
		{"bench", "http://not-iscsi/"},
	} {
		root := newRootCmd()
		root.SetArgs(args)
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		err := root.Execute()
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
}
