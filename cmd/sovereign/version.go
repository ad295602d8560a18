package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func init() { rootCmd.AddCommand(newVersionCmd()) }

// versionInfo is what `sovereign version` prints, from the build
// information the Go toolchain embeds in the binary.
type versionInfo struct {
	// Module is the main module's path and Version its version ("(devel)"
	// for a build from a checkout, a tag for `go install …@vX`).
	Module  string `json:"module"`
	Version string `json:"version"`
	// Go is the toolchain that built the binary.
	Go string `json:"go"`
	// Revision, Time and Modified are the VCS commit, its time, and
	// whether the work tree had uncommitted changes (empty when the build
	// had no VCS information, e.g. -buildvcs=false).
	Revision string `json:"revision,omitempty"`
	Time     string `json:"time,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	// Platform is GOOS/GOARCH.
	Platform string `json:"platform,omitempty"`
}

func readVersion(bi *debug.BuildInfo, ok bool) versionInfo {
	v := versionInfo{Module: "github.com/sovereign-fl/sovereign", Version: "unknown"}
	if !ok || bi == nil {
		return v
	}
	if bi.Main.Path != "" {
		v.Module = bi.Main.Path
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	v.Go = bi.GoVersion
	var goos, goarch string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	if goos != "" {
		v.Platform = goos + "/" + goarch
	}
	return v
}

func (v versionInfo) print(w io.Writer) {
	fmt.Fprintf(w, "sovereign %s (%s)", v.Version, v.Module)
	if v.Revision != "" {
		fmt.Fprintf(w, ", commit %s", v.Revision)
		if v.Modified {
			fmt.Fprint(w, " with local changes")
		}
		if v.Time != "" {
			fmt.Fprintf(w, " of %s", v.Time)
		}
	}
	if v.Go != "" {
		fmt.Fprintf(w, ", built with %s", v.Go)
	}
	if v.Platform != "" {
		fmt.Fprintf(w, " for %s", v.Platform)
	}
	fmt.Fprintln(w)
}

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go toolchain of this binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := readVersion(debug.ReadBuildInfo())
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			v.print(cmd.OutOrStdout())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
