package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/sovereign-fl/sovereign/data"
	"github.com/sovereign-fl/sovereign/model"
	"github.com/sovereign-fl/sovereign/model/modelfile"
)

func init() { rootCmd.AddCommand(newPredictCmd()) }

func newPredictCmd() *cobra.Command {
	var modelPath, dataset, out, split string
	cmd := &cobra.Command{
		Use:   "predict --model FILE --dataset SPEC [--out predictions.csv]",
		Short: "Predict the class of every example of a data set with a model file, locally",
		Long: "predict loads a model file (safetensors, as written by `sovereign sim` or `sovereign export`)\n" +
			"and the data set --dataset (the forms of `sovereign sim`), and writes one CSV row per\n" +
			"example of --split: index, predicted class, and the probability of each class. Nothing\n" +
			"leaves the machine.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if modelPath == "" {
				return errors.New("predict: --model is required")
			}
			m, net, d, err := loadForInference(modelPath, dataset, split)
			if err != nil {
				return fmt.Errorf("predict: %w", err)
			}
			probs := make([]float32, d.N*m.Spec.Classes)
			if err := net.Probabilities(d.X, d.N, probs); err != nil {
				return fmt.Errorf("predict: %w", err)
			}
			var w io.Writer = cmd.OutOrStdout()
			var f *os.File
			if out != "" && out != "-" {
				if f, err = os.Create(out); err != nil {
					return fmt.Errorf("predict: --out: %w", err)
				}
				defer f.Close()
				w = f
			}
			if err := writePredictions(w, probs, d.N, m.Spec.Classes); err != nil {
				return fmt.Errorf("predict: %s: %w", out, err)
			}
			if f != nil {
				if err := f.Close(); err != nil {
					return fmt.Errorf("predict: %s: %w", out, err)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote %d predictions to %s\n", d.N, out)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&modelPath, "model", "", "model file (safetensors)")
	cmd.Flags().StringVar(&dataset, "dataset", "digits", "data set: "+data.SpecForms)
	cmd.Flags().StringVar(&out, "out", "", "CSV file to write (default: standard output)")
	cmd.Flags().StringVar(&split, "split", "test", "which part of the data set: test (the held-out split), train or all")
	return cmd
}

// writePredictions writes the header index,predicted,p0,...,p(k-1) and one
// row per example.
func writePredictions(w io.Writer, probs []float32, n, classes int) error {
	bw := bufio.NewWriter(w)
	bw.WriteString("index,predicted")
	for c := 0; c < classes; c++ {
		fmt.Fprintf(bw, ",p%d", c)
	}
	bw.WriteByte('\n')
	for i := 0; i < n; i++ {
		row := probs[i*classes : (i+1)*classes]
		best := 0
		for c, p := range row {
			if p > row[best] {
				best = c
			}
		}
		bw.WriteString(strconv.Itoa(i))
		bw.WriteByte(',')
		bw.WriteString(strconv.Itoa(best))
		for _, p := range row {
			bw.WriteByte(',')
			bw.WriteString(strconv.FormatFloat(float64(p), 'g', 9, 32))
		}
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// loadForInference loads the model file and the chosen split of the data
// set, checks that they fit each other, and applies the file's
// standardisation to data that the spec did not standardise itself.
func loadForInference(modelPath, dataset, split string) (*modelfile.Model, *model.Network, *data.Dataset, error) {
	m, err := modelfile.Load(modelPath)
	if err != nil {
		return nil, nil, nil, err
	}
	var train, test *data.Dataset
	if s, st, ok, err := m.Provenance.DataEncoding(); err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", modelPath, err)
	} else if ok {
		// The model carries the federation's data schema and statistics:
		// the CSV is read, imputed, one-hot encoded and standardised as
		// every site did in training.
		train, test, err = loadWithModelSchema(dataset, s, st)
		if err != nil {
			return nil, nil, nil, err
		}
	} else if train, test, err = data.Load(dataset); err != nil {
		return nil, nil, nil, fmt.Errorf("--dataset %q: %w", dataset, err)
	}
	var d *data.Dataset
	switch split {
	case "test":
		d = test
	case "train":
		d = train
	case "all":
		d = &data.Dataset{Name: dataset, X: append(append([]float32(nil), train.X...), test.X...), Y: append(append([]int32(nil), train.Y...), test.Y...),
			N: train.N + test.N, Dim: train.Dim, Classes: train.Classes, C: train.C, H: train.H, W: train.W, StdMean: train.StdMean, StdScale: train.StdScale}
	default:
		return nil, nil, nil, fmt.Errorf("--split %q: want test, train or all", split)
	}
	if d.N == 0 {
		return nil, nil, nil, fmt.Errorf("--dataset %q: the %s split is empty", dataset, split)
	}
	s := m.Spec
	if d.Dim != s.InputDim() {
		return nil, nil, nil, fmt.Errorf("--dataset %q has %d features per example (%dx%dx%d) but %s's model %s takes %dx%dx%d",
			dataset, d.Dim, d.C, d.H, d.W, modelPath, s, s.InC, s.InH, s.InW)
	}
	if d.Classes > s.Classes {
		return nil, nil, nil, fmt.Errorf("--dataset %q has %d classes but %s's model predicts %d", dataset, d.Classes, modelPath, s.Classes)
	}
	if st := m.Provenance.Standardize; st != nil && d.StdMean == nil {
		st.Apply(d.X)
	}
	net, err := model.New(s)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := net.SetParams(m.Params); err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", modelPath, err)
	}
	return m, net, d, nil
}

// loadWithModelSchema reads dataset ("csv:FILE[?test=FRAC&seed=N]") under a
// model file's schema and encodes both splits with its statistics.
func loadWithModelSchema(dataset string, s *data.Schema, st *data.Stats) (train, test *data.Dataset, err error) {
	path, testFrac, seed, err := data.ParseSchemaCSV(dataset)
	if err != nil {
		return nil, nil, fmt.Errorf("--dataset %q: the model carries a data schema: %w", dataset, err)
	}
	if train, test, err = data.LoadSchemaDataset(path, s, st, testFrac, seed, s.Standardizes()); err != nil {
		return nil, nil, fmt.Errorf("--dataset %q: %w", dataset, err)
	}
	return train, test, nil
}
