// Package testtool decides what a test does when a Debian package it needs
// (python3-torch, python3-numpy, chromium) is missing: on a developer's
// machine it skips, naming the package; with SOVEREIGN_REQUIRE_TOOLS set
// (.ci/run sets it after installing the packages) it fails, so CI can never
// pass by skipping.
package testtool

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Python is Debian's interpreter, the one with Debian's python3-* modules
// (another python3 may come first on PATH).
const Python = "/usr/bin/python3"

// Missing skips tb (or fails it under SOVEREIGN_REQUIRE_TOOLS) with the
// reason format, a.
func Missing(tb testing.TB, format string, a ...any) {
	tb.Helper()
	if os.Getenv("SOVEREIGN_REQUIRE_TOOLS") != "" {
		tb.Fatalf("SOVEREIGN_REQUIRE_TOOLS is set: "+format, a...)
	}
	tb.Skipf(format, a...)
}

// NeedPython checks that Python imports every module (e.g. "torch",
// "numpy"); otherwise Missing names the Debian packages (python3-MODULE).
func NeedPython(tb testing.TB, modules ...string) {
	tb.Helper()
	out, err := exec.Command(Python, "-c", "import "+strings.Join(modules, ", ")).CombinedOutput()
	if err == nil {
		return
	}
	pkgs := make([]string, len(modules))
	for i, m := range modules {
		pkgs[i] = "python3-" + m
	}
	Missing(tb, "%s", fmt.Sprintf("needs %s with Debian's %s (apt-get install %s; .ci/run installs them): %v: %s",
		Python, strings.Join(pkgs, " and "), strings.Join(pkgs, " "), err, out))
}
