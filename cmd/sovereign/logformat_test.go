package main

import (
	"strings"
	"testing"
)

func TestLogFormatFlag(t *testing.T) {
	f := "text"
	if err := setLogFormat(&f, "json"); err != nil || f != "json" {
		t.Fatalf("--log-format json: %q, %v", f, err)
	}
	if err := setLogFormat(&f, "yaml"); err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Fatalf("--log-format yaml: %v", err)
	}
}
