package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sovereign-fl/sovereign/coordinator"
)

func init() { rootCmd.AddCommand(newLedgerCmd()) }

// newLedgerCmd returns `sovereign ledger`, whose sub-command verify checks
// a coordinator's hash-chained training ledger.
func newLedgerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Inspect the coordinator's hash-chained training ledger",
	}
	cmd.AddCommand(newLedgerVerifyCmd())
	return cmd
}

func newLedgerVerifyCmd() *cobra.Command {
	var dataDir, snapshot, file string
	cmd := &cobra.Command{
		Use:   "verify (--data DIR | --file LEDGER.json | --snapshot FILE)",
		Short: "Check every hash of the ledger; print OK with the head hash or name the first bad entry",
		Long: "verify reads the ledger read-only, from the coordinator's data folder (DIR/" + coordinator.LedgerFileName + "),\n" +
			"from a ledger export, or from a coordinator state snapshot, and walks the chain: every entry's\n" +
			"hash must be SHA-256 of its canonical encoding and must be named by the next entry. It prints\n" +
			"OK with the head hash, or names the first bad entry and exits with a non-zero status.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			set := 0
			for _, s := range []string{dataDir, snapshot, file} {
				if s != "" {
					set++
				}
			}
			if set != 1 {
				return errors.New("ledger verify: give exactly one of --data, --file, --snapshot")
			}
			var entries []coordinator.LedgerEntry
			var err error
			switch {
			case snapshot != "":
				var f *os.File
				if f, err = os.Open(snapshot); err != nil {
					return fmt.Errorf("ledger verify: %w", err)
				}
				defer f.Close()
				entries, err = coordinator.ReadSnapshotLedger(f)
				if err != nil {
					err = fmt.Errorf("%s: %w", snapshot, err)
				}
			default:
				path := file
				if dataDir != "" {
					path = filepath.Join(dataDir, coordinator.LedgerFileName)
					if _, serr := os.Stat(path); errors.Is(serr, fs.ErrNotExist) {
						return fmt.Errorf("ledger verify: --data %s: no %s (has the coordinator committed a model yet?)", dataDir, coordinator.LedgerFileName)
					}
				}
				entries, err = coordinator.ReadLedgerFile(path)
			}
			if err != nil {
				return fmt.Errorf("ledger verify: %w", err)
			}
			if len(entries) == 0 {
				return errors.New("ledger verify: the ledger is empty")
			}
			if err := coordinator.VerifyLedger(entries); err != nil {
				return fmt.Errorf("ledger verify: BAD: %w", err)
			}
			head := entries[len(entries)-1]
			fmt.Fprintf(cmd.OutOrStdout(), "OK %d entries, head round %d hash %s\n", len(entries), head.Round, head.Hash)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data", "", "coordinator data folder holding "+coordinator.LedgerFileName)
	cmd.Flags().StringVar(&file, "file", "", "a ledger export (JSON)")
	cmd.Flags().StringVar(&snapshot, "snapshot", "", "a coordinator state snapshot")
	return cmd
}
