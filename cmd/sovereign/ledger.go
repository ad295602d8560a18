package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/model/modelfile"
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
	var dataDir, snapshot, file, modelPath string
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
			var end *coordinator.StudyEnded
			var err error
			switch {
			case snapshot != "":
				var f *os.File
				if f, err = os.Open(snapshot); err != nil {
					return fmt.Errorf("ledger verify: %w", err)
				}
				defer f.Close()
				entries, end, err = coordinator.ReadSnapshotLedgerEnd(f)
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
				entries, end, err = coordinator.ReadLedgerFileEnd(path)
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
			if end != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "study %s after round %d: %s\n", end.State, end.Round, end.Reason)
			}
			if modelPath != "" {
				return verifyModelInLedger(cmd.OutOrStdout(), modelPath, entries)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data", "", "coordinator data folder holding "+coordinator.LedgerFileName)
	cmd.Flags().StringVar(&file, "file", "", "a ledger export (JSON)")
	cmd.Flags().StringVar(&snapshot, "snapshot", "", "a coordinator state snapshot")
	cmd.Flags().StringVar(&modelPath, "model", "", "also check that this model file (safetensors) is a committed model of the ledger")
	return cmd
}

// verifyModelInLedger checks that the model of a safetensors file (its
// tensors' SHA-256, which modelfile.Load checks against the file's
// model_sha256) is the model of a ledger entry, and that the file's
// ledger_entry, if any, names that entry.
func verifyModelInLedger(w io.Writer, path string, entries []coordinator.LedgerEntry) error {
	m, err := modelfile.Load(path)
	if err != nil {
		return fmt.Errorf("ledger verify: --model: %w", err)
	}
	for _, e := range entries {
		if e.ModelHash.String() != m.Hash {
			continue
		}
		if le := m.Provenance.LedgerEntry; le != "" && le != e.Hash.String() {
			return fmt.Errorf("ledger verify: BAD: %s: model %s is round %d of the ledger, entry %s, but the file names entry %s", path, m.Hash, e.Round, e.Hash, le)
		}
		fmt.Fprintf(w, "OK model %s (sha256 %s) is round %d, ledger entry %s, %d institutions\n", path, m.Hash, e.Round, e.Hash, len(e.Participants))
		return nil
	}
	return fmt.Errorf("ledger verify: BAD: %s: model sha256 %s is not in the ledger (%d entries)", path, m.Hash, len(entries))
}
