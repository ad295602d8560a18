package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sovereign-fl/sovereign/coordinator"
)

func TestLedgerVerifyCommand(t *testing.T) {
	var entries []coordinator.LedgerEntry
	var head *coordinator.LedgerEntry
	for r := range uint64(4) {
		var mh coordinator.Hash
		mh[0] = byte(r + 1)
		e := coordinator.NewLedgerEntry(head, r, mh, []coordinator.WorkerID{"a", "b"}, float64(r)*0.5)
		entries = append(entries, e)
		head = &entries[len(entries)-1]
	}
	dir := t.TempDir()
	path := filepath.Join(dir, coordinator.LedgerFileName)
	if err := coordinator.WriteLedgerFile(path, entries); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		cmd := newLedgerCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(args)
		err := cmd.Execute()
		return out.String(), err
	}
	out, err := run("verify", "--data", dir)
	if err != nil || !strings.Contains(out, "OK") || !strings.Contains(out, entries[3].Hash.String()) {
		t.Fatalf("good ledger: %q %v", out, err)
	}
	entries[2].Participants = []coordinator.WorkerID{"a"}
	if err := coordinator.WriteLedgerFile(path, entries); err != nil {
		t.Fatal(err)
	}
	_, err = run("verify", "--data", dir)
	if err == nil || !strings.Contains(err.Error(), "entry 2") {
		t.Fatalf("tampered ledger: %v", err)
	}
	if _, err := run("verify", "--data", t.TempDir()); err == nil {
		t.Fatal("missing ledger accepted")
	}
}
