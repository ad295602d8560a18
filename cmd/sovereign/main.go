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
}

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "sovereign:", err)
		os.Exit(1)
	}
}
