package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/spf13/cobra"

	"github.com/sovereign-fl/sovereign/data"
	"github.com/sovereign-fl/sovereign/model"
)

func init() { rootCmd.AddCommand(newEvaluateCmd()) }

// evalReport is the output of `sovereign evaluate --json`; scripts rely on
// its keys.
type evalReport struct {
	Model     string       `json:"model"`
	Dataset   string       `json:"dataset"`
	Split     string       `json:"split"`
	Examples  int          `json:"examples"`
	Accuracy  float64      `json:"accuracy"`
	Loss      float64      `json:"loss"`
	PerClass  []classStats `json:"per_class"`
	MacroF1   float64      `json:"macro_f1"`
	Confusion [][]int      `json:"confusion"` // [true class][predicted class]
	ROCAUC    *float64     `json:"roc_auc,omitempty"`
}

type classStats struct {
	Class     int     `json:"class"`
	Support   int     `json:"support"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	F1        float64 `json:"f1"`
}

func newEvaluateCmd() *cobra.Command {
	var modelPath, dataset, split string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "evaluate --model FILE --dataset SPEC [--json]",
		Short: "Evaluate a model file on a data set, locally: accuracy, loss, per-class precision/recall/F1, confusion matrix, ROC AUC",
		Long: "evaluate loads a model file and the --split (default: the held-out test split) of --dataset\n" +
			"(the forms of `sovereign sim`) and prints accuracy and mean cross-entropy (computed as the\n" +
			"simulator does), per-class precision, recall and F1, the confusion matrix and, for two\n" +
			"classes, the ROC AUC of the class-1 probability. Nothing leaves the machine.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if modelPath == "" {
				return errors.New("evaluate: --model is required")
			}
			m, net, d, err := loadForInference(modelPath, dataset, split)
			if err != nil {
				return fmt.Errorf("evaluate: %w", err)
			}
			k := m.Spec.Classes
			probs := make([]float32, d.N*k)
			loss, acc, err := net.EvaluateProbabilities(d.X, d.Y, d.N, probs)
			if err != nil {
				return fmt.Errorf("evaluate: %w", err)
			}
			r := classificationReport(probs, d.Y, k)
			r.Model, r.Dataset, r.Split, r.Accuracy, r.Loss = modelPath, dataset, split, acc, loss
			return printReport(cmd.OutOrStdout(), r, asJSON)
		},
	}
	cmd.Flags().StringVar(&modelPath, "model", "", "model file (safetensors)")
	cmd.Flags().StringVar(&dataset, "dataset", "digits", "data set: "+data.SpecForms)
	cmd.Flags().StringVar(&split, "split", "test", "which part of the data set: test (the held-out split), train or all")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

// classificationReport computes the confusion matrix (argmax predictions,
// the first largest probability winning ties), per-class precision, recall
// and F1 (0 where undefined), their macro F1 and, for two classes, the ROC
// AUC of the class-1 probability.
func classificationReport(probs []float32, y []int32, k int) evalReport {
	r := evalReport{Examples: len(y), Confusion: make([][]int, k)}
	for c := range r.Confusion {
		r.Confusion[c] = make([]int, k)
	}
	for i, yi := range y {
		row := probs[i*k : (i+1)*k]
		best := 0
		for c, p := range row {
			if p > row[best] {
				best = c
			}
		}
		r.Confusion[yi][best]++
	}
	for c := 0; c < k; c++ {
		tp, support, predicted := r.Confusion[c][c], 0, 0
		for j := 0; j < k; j++ {
			support += r.Confusion[c][j]
			predicted += r.Confusion[j][c]
		}
		s := classStats{Class: c, Support: support}
		if predicted > 0 {
			s.Precision = float64(tp) / float64(predicted)
		}
		if support > 0 {
			s.Recall = float64(tp) / float64(support)
		}
		if s.Precision+s.Recall > 0 {
			s.F1 = 2 * s.Precision * s.Recall / (s.Precision + s.Recall)
		}
		r.PerClass = append(r.PerClass, s)
		r.MacroF1 += s.F1 / float64(k)
	}
	if k == 2 {
		scores := make([]float64, len(y))
		for i := range y {
			scores[i] = float64(probs[i*2+1])
		}
		if auc, ok := rocAUC(scores, y); ok {
			r.ROCAUC = &auc
		}
	}
	return r
}

// rocAUC is the area under the ROC curve of scores for the positive class
// 1 (model.BinaryMetrics: the Mann–Whitney U statistic with mid-ranks for
// ties, Hanley & McNeil 1982). It is undefined (false) when one class is
// absent.
func rocAUC(scores []float64, y []int32) (float64, bool) {
	m, err := model.BinaryMetrics(scores, y)
	if err != nil || math.IsNaN(m.AUC) {
		return 0, false
	}
	return m.AUC, true
}

func printReport(w io.Writer, r evalReport, asJSON bool) error {
	if asJSON {
		b, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	fmt.Fprintf(w, "%s on %s (%s split, %d examples)\n", r.Model, r.Dataset, r.Split, r.Examples)
	fmt.Fprintf(w, "accuracy %.4f  loss %.4f  macro F1 %.4f", r.Accuracy, r.Loss, r.MacroF1)
	if r.ROCAUC != nil {
		fmt.Fprintf(w, "  ROC AUC %.4f", *r.ROCAUC)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "class  support  precision  recall  f1")
	for _, s := range r.PerClass {
		fmt.Fprintf(w, "%5d  %7d  %9.4f  %6.4f  %.4f\n", s.Class, s.Support, s.Precision, s.Recall, s.F1)
	}
	fmt.Fprintln(w, "confusion matrix (rows: true class, columns: predicted):")
	for _, row := range r.Confusion {
		for j, v := range row {
			if j > 0 {
				fmt.Fprint(w, " ")
			}
			fmt.Fprintf(w, "%5d", v)
		}
		fmt.Fprintln(w)
	}
	return nil
}
