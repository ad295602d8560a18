package main

import (
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/sovereign-fl/sovereign/model/modelfile"
)

func init() { rootCmd.AddCommand(newModelCmd()) }

// newModelCmd returns `sovereign model`, whose sub-command info prints a
// model file's provenance and tensors.
func newModelCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "model", Short: "Inspect exported model files (safetensors)"}
	cmd.AddCommand(&cobra.Command{
		Use:   "info FILE",
		Short: "Print a model file's provenance (__metadata__) and its tensors",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := modelfile.Load(args[0])
			if err != nil {
				return fmt.Errorf("model info: %w", err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%s: model %s, input %dx%dx%d, %d classes, %d parameters, sha256 %s\n",
				args[0], m.Spec, m.Spec.InC, m.Spec.InH, m.Spec.InW, m.Spec.Classes, len(m.Params), m.Hash)
			keys := make([]string, 0, len(m.Metadata))
			for k := range m.Metadata {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				v := m.Metadata[k]
				if len(v) > 120 {
					v = v[:117] + "..."
				}
				fmt.Fprintf(w, "  %-14s %s\n", k, v)
			}
			if !m.Provenance.DP {
				fmt.Fprintln(w, "  (no differential privacy: no (ε, δ) guarantee is claimed)")
			}
			fmt.Fprintln(w, "tensors:")
			for _, t := range m.Tensors {
				fmt.Fprintf(w, "  %-10s %v\n", t.Name, t.Shape)
			}
			return nil
		},
	})
	return cmd
}
