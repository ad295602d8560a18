package main

import (
	"bytes"
	"context"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/sovereign-fl/sovereign/sim"
)

// TestSimChecksInputsBeforeBanner: a bad input is the only thing printed.
func TestSimChecksInputsBeforeBanner(t *testing.T) {
	cfg := sim.DefaultConfig()
	cfg.Dataset = "csv:" + filepath.Join(t.TempDir(), "absent.csv")
	cfg.Out = t.TempDir()
	var out bytes.Buffer
	err := runSim(context.Background(), cfg, &out)
	if err == nil || !strings.Contains(err.Error(), "absent.csv") {
		t.Fatalf("err = %v, want one naming the data file", err)
	}
	if out.Len() != 0 {
		t.Fatalf("printed %q before refusing the input", out.String())
	}
}

// TestUnknownCommand: an unknown sub-command is an error with a
// suggestion, and the root command with no argument is not.
func TestUnknownCommand(t *testing.T) {
	err := unknownCommand(rootCmd, []string{"statsu"})
	if err == nil || !strings.Contains(err.Error(), `did you mean "status"`) || !strings.Contains(err.Error(), "--help") {
		t.Fatalf("err = %v", err)
	}
	if err := unknownCommand(rootCmd, []string{"frobnicate"}); err == nil || strings.Contains(err.Error(), "did you mean") {
		t.Fatalf("err = %v, want unknown without a suggestion", err)
	}
	if err := unknownCommand(rootCmd, nil); err != nil {
		t.Fatal(err)
	}
	// The whole command tree refuses it too (main exits 1 on an error).
	rootCmd.SetArgs([]string{"lederr"})
	defer rootCmd.SetArgs(nil)
	var buf bytes.Buffer
	rootCmd.SetOut(&buf)
	rootCmd.SetErr(&buf)
	defer rootCmd.SetOut(nil)
	defer rootCmd.SetErr(nil)
	if err := rootCmd.Execute(); err == nil || !strings.Contains(err.Error(), `"ledger"`) {
		t.Fatalf("Execute(lederr) = %v, want an error suggesting ledger", err)
	}
}

// TestVersionFromBuildInfo: the module version and VCS settings the
// toolchain embeds are what `sovereign version` prints.
func TestVersionFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.6", Main: debug.Module{Path: "github.com/sovereign-fl/sovereign", Version: "v0.3.0"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "49cfc26abc"}, {Key: "vcs.time", Value: "2026-12-03T10:00:00Z"},
			{Key: "vcs.modified", Value: "true"}, {Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "amd64"}}}
	v := readVersion(bi, true)
	var b bytes.Buffer
	v.print(&b)
	want := "sovereign v0.3.0 (github.com/sovereign-fl/sovereign), commit 49cfc26abc with local changes of 2026-12-03T10:00:00Z, built with go1.26.6 for linux/amd64\n"
	if b.String() != want {
		t.Fatalf("got  %q\nwant %q", b.String(), want)
	}
	if v := readVersion(nil, false); v.Version != "unknown" {
		t.Fatalf("no build info: %+v", v)
	}
	// The test binary itself has build information.
	if v := readVersion(debug.ReadBuildInfo()); v.Go == "" {
		t.Fatalf("ReadBuildInfo gave no Go version: %+v", v)
	}
}
