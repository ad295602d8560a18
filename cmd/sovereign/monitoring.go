package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// addLogFormatFlag adds --log-format to a long-running command.
func addLogFormatFlag(cmd *cobra.Command, dst *string) {
	cmd.Flags().StringVar(dst, "log-format", "", "log line format, text or json (default: the configuration file's log_format, else text)")
}

// setLogFormat applies a --log-format value over the file's.
func setLogFormat(dst *string, flag string) error {
	switch flag {
	case "":
	case "text", "json":
		*dst = flag
	default:
		return fmt.Errorf("--log-format %q: want text or json", flag)
	}
	return nil
}
