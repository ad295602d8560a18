package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/coordinator/service"
	"github.com/sovereign-fl/sovereign/model"
	"github.com/sovereign-fl/sovereign/model/modelfile"
)

func init() { rootCmd.AddCommand(newExportCmd()) }

func newExportCmd() *cobra.Command {
	var dataDir, out string
	var round int
	cmd := &cobra.Command{
		Use:   "export --data COORD-DATA [--round N] --out model.safetensors",
		Short: "Write a committed model of a coordinator replica's data folder as a safetensors file",
		Long: "export reads a coordinator replica's data folder (stopped or running; it writes nothing\n" +
			"there) and writes the model committed in round --round (default: the latest) as a\n" +
			"safetensors file in PyTorch's nn.Sequential layout, with its provenance in __metadata__:\n" +
			"the model's SHA-256 as committed, the round's ledger entry hash, the number of\n" +
			"institutions in it, the (ε, δ) spent and the federation's name (docs/model-export.md).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" || out == "" {
				return errors.New("export: --data and --out are required")
			}
			if err := runExport(dataDir, round, cmd.Flags().Changed("round"), out, cmd.OutOrStdout()); err != nil {
				return fmt.Errorf("export: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data", "", "coordinator data folder")
	cmd.Flags().IntVar(&round, "round", 0, "round of the model to export (default: the latest committed)")
	cmd.Flags().StringVar(&out, "out", "", "safetensors file to write")
	return cmd
}

func runExport(dataDir string, round int, roundSet bool, out string, w io.Writer) error {
	b, err := os.ReadFile(filepath.Join(dataDir, service.ModelInfoFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("--data %s: no %s (is this a coordinator's data folder, and has it started once?)", dataDir, service.ModelInfoFileName)
	}
	if err != nil {
		return fmt.Errorf("--data %s: %w", dataDir, err)
	}
	var info service.ModelInfo
	if err := json.Unmarshal(b, &info); err != nil || len(info.Input) != 3 {
		return fmt.Errorf("%s: malformed (want model, input [C, H, W], classes): %v", filepath.Join(dataDir, service.ModelInfoFileName), err)
	}
	spec, err := model.ParseSpec(info.Model, info.Input[0], info.Input[1], info.Input[2], info.Classes)
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(dataDir, service.ModelInfoFileName), err)
	}
	statePath := filepath.Join(dataDir, service.StateFileName)
	sf, err := os.Open(statePath)
	if err != nil {
		return fmt.Errorf("--data %s: %w (has the coordinator committed a model yet?)", dataDir, err)
	}
	fsm := coordinator.NewFSM()
	err = fsm.Restore(sf)
	sf.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", statePath, err)
	}
	st := fsm.State()
	if len(st.Ledger) == 0 {
		return fmt.Errorf("--data %s: no model committed yet", dataDir)
	}
	entry := st.Ledger[len(st.Ledger)-1]
	if roundSet {
		found := false
		for _, e := range st.Ledger {
			if e.Round == uint64(round) {
				entry, found = e, true
			}
		}
		if !found {
			return fmt.Errorf("--round %d: no model committed in that round (the ledger has rounds %d to %d; failed rounds are skipped)", round, st.Ledger[0].Round, st.Ledger[len(st.Ledger)-1].Round)
		}
	}
	params, copied, err := readCommittedModel(filepath.Join(dataDir, "registry"), entry.ModelHash)
	if err != nil {
		return err
	}
	p := modelfile.Provenance{Source: "coordinator", Round: int(entry.Round), LedgerEntry: entry.Hash.String(),
		Institutions: len(entry.Participants), Federation: info.Federation}
	if info.DP {
		p.DP, p.Epsilon, p.Delta = true, entry.Epsilon, info.Delta
	}
	if s := st.Stats; s != nil && entry.Round > s.Round {
		// The model was trained on data encoded with these statistics.
		p.Schema, p.Stats = s.Schema, s.Stats
	}
	if err := modelfile.Save(out, spec, params, p); err != nil {
		return err
	}
	how := "registry opened read-only"
	if copied {
		how = "registry in use (a running replica?): read from a copy"
	}
	fmt.Fprintf(w, "wrote %s: model %s round %d, sha256 %s, ledger entry %s, %d institutions (%s)\n",
		out, spec, entry.Round, entry.ModelHash, entry.Hash, len(entry.Participants), how)
	return nil
}

// readCommittedModel reads the model with hash h from a replica's registry.
// A stopped replica's registry is opened read-only. A running replica holds
// badger's directory lock, so its files are copied into a temporary folder
// (only read, never written) and the copy is opened; a copy taken while the
// replica compacts may be inconsistent, so it is retried. Either way the
// bytes must hash to h (Registry.GetBytes checks), so a torn copy can
// never yield a wrong model.
func readCommittedModel(regDir string, h coordinator.Hash) (params []float32, copied bool, err error) {
	if reg, err := coordinator.OpenRegistryReadOnly(regDir); err == nil {
		p, err := reg.Get(h)
		reg.Close()
		if err == nil {
			return p, false, nil
		}
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		p, err := readFromCopy(regDir, h)
		if err == nil {
			return p, true, nil
		}
		lastErr = err
		time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond)
	}
	return nil, true, fmt.Errorf("model %s from %s: %w", h, regDir, lastErr)
}

func readFromCopy(regDir string, h coordinator.Hash) ([]float32, error) {
	tmp, err := os.MkdirTemp("", "sovereign-export-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	entries, err := os.ReadDir(regDir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == "LOCK" {
			continue
		}
		if err := copyFile(filepath.Join(regDir, e.Name()), filepath.Join(tmp, e.Name())); err != nil {
			return nil, err
		}
	}
	reg, err := coordinator.OpenRegistry(tmp)
	if err != nil {
		return nil, err
	}
	defer reg.Close()
	return reg.Get(h)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
