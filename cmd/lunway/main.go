// Command lunway is the Lunway iSCSI target daemon and its tools.
//
//	lunway serve [--config FILE] [--listen ADDR] [--data-dir DIR]
//
// See README.md and docs/CONFIG.md.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/lunway/lunway/cmd/lunway/internal/config"
	"github.com/spf13/cobra"
)

// Exit statuses.
const (
	exitError  = 1 // the command failed at run time
	exitConfig = 2 // bad configuration or usage; nothing was changed
)

// usageError marks errors that are the caller's fault (exit status 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func main() {
	root := newRootCmd()
	if err := root.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "lunway: %v\n", err)
		var fe *config.FieldError
		var ue usageError
		if errors.As(err, &fe) || errors.As(err, &ue) {
			os.Exit(exitConfig)
		}
		os.Exit(exitError)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "lunway",
		Short:         "Lunway: an iSCSI target whose LUNs map straight onto files, Ceph and S3",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newServeCmd(), newBenchCmd())
	addAdminCommands(root)
	root.AddCommand(newImportCmd(), newExportCmd(), newVolumeCmd(), newCheckCmd("check"))
	return root
}
