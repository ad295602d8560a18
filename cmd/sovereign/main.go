// Command sovereign is the single binary of the Sovereign federated-learning
// system: a simulator for researchers, and the coordinator and worker
// processes that institutions run.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// rootCmd is the top of the command tree. Sub-commands add themselves to it
// from their own files' init functions, so each lives in one file.
var rootCmd = &cobra.Command{
	Use:           "sovereign",
	Short:         "Federated learning across institutions that do not share data",
	SilenceUsage:  true,
	SilenceErrors: true,
	// With no Run of its own, an unknown sub-command is an error (exit 1)
	// and cobra suggests the nearest known one.
	SuggestionsMinimumDistance: 2,
	Args:                       unknownCommand,
	RunE: func(cmd *cobra.Command, args []string) error {
		return cmd.Help()
	},
}

// unknownCommand refuses any argument to the root command: it is the name
// of a sub-command that does not exist. The error suggests the nearest
// names and points at --help.
func unknownCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q", args[0])
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf("; did you mean %q?", s[0])
	}
	return fmt.Errorf("%s (run `sovereign --help` for the list of commands)", msg)
}

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "sovereign:", err)
		os.Exit(1)
	}
}
