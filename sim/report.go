package sim

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sovereign-fl/sovereign/data"
	"github.com/sovereign-fl/sovereign/model/modelfile"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Output file names; scripts rely on them.
const (
	MetricsFile = "metrics.csv"
	SummaryFile = "summary.json"
	// StatsFile holds the federation statistics of a --schema run (data.Stats).
	StatsFile = "stats.json"
	PlotFile  = "accuracy.png"
	ModelFile = "model.safetensors"
)

// metricsHeader is the first row of metrics.csv; scripts rely on its names.
var metricsHeader = []string{"round", "accuracy", "loss", "local_accuracy", "train_loss", "clients", "sampled", "dropped", "rejected", "seconds", "epsilon", "auc", "tp", "fp", "tn", "fn"}

// WriteOutputs writes metrics.csv, summary.json, accuracy.png and
// report.html into dir.
func WriteOutputs(dir string, res *Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--out %q: %w", dir, err)
	}
	if err := writeMetrics(filepath.Join(dir, MetricsFile), res.Rounds); err != nil {
		return err
	}
	if err := writeSummary(filepath.Join(dir, SummaryFile), &res.Summary); err != nil {
		return err
	}
	if res.Stats != nil {
		if err := data.WriteStats(filepath.Join(dir, StatsFile), res.Stats); err != nil {
			return fmt.Errorf("--out %q: %w", dir, err)
		}
	}
	if err := writeModel(filepath.Join(dir, ModelFile), res); err != nil {
		return err
	}
	if err := writePlot(filepath.Join(dir, PlotFile), res.Rounds, plotTitle(res.Summary.Config)); err != nil {
		return err
	}
	return writeReport(filepath.Join(dir, ReportFile), res, time.Now())
}

// WriteSummary writes only summary.json into dir (a run interrupted before
// its first round has nothing else to write).
func WriteSummary(dir string, res *Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--out %q: %w", dir, err)
	}
	return writeSummary(filepath.Join(dir, SummaryFile), &res.Summary)
}

func ftoa(v float64) string {
	if math.IsNaN(v) {
		return ""
	}
	return strconv.FormatFloat(v, 'g', 8, 64)
}

func writeMetrics(path string, rounds []RoundMetrics) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write(metricsHeader)
	for _, m := range rounds {
		w.Write([]string{
			strconv.Itoa(m.Round), ftoa(m.Accuracy), ftoa(m.Loss), ftoa(m.LocalAccuracy), ftoa(m.TrainLoss),
			strconv.Itoa(m.Clients), strconv.Itoa(m.Sampled), strconv.Itoa(m.Dropped), strconv.Itoa(m.Rejected),
			strconv.FormatFloat(m.Seconds, 'f', 4, 64), ftoa(m.Epsilon),
			ftoa(m.AUC), strconv.Itoa(m.TP), strconv.Itoa(m.FP), strconv.Itoa(m.TN), strconv.Itoa(m.FN),
		})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

func writeSummary(path string, s *Summary) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// writePlot draws held-out accuracy and loss per round.
func writePlot(path string, rounds []RoundMetrics, title string) error {
	p := plot.New()
	p.Title.Text = "Held-out accuracy and loss: " + title
	p.X.Label.Text = "round"
	p.Y.Label.Text = "accuracy (fraction) / cross-entropy loss"
	acc := make(plotter.XYs, len(rounds))
	loss := make(plotter.XYs, len(rounds))
	maxY := 1.0
	for i, m := range rounds {
		acc[i] = plotter.XY{X: float64(m.Round), Y: m.Accuracy}
		loss[i] = plotter.XY{X: float64(m.Round), Y: m.Loss}
		if !math.IsNaN(m.Loss) && !math.IsInf(m.Loss, 0) {
			maxY = max(maxY, m.Loss)
		} else {
			loss[i].Y = 0
		}
	}
	la, err := plotter.NewLine(acc)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	la.Color = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	la.Width = vg.Points(1.5)
	ll, err := plotter.NewLine(loss)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	ll.Color = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	ll.Width = vg.Points(1.5)
	ll.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
	p.Add(plotter.NewGrid(), la, ll)
	p.Legend.Add("held-out accuracy", la)
	p.Legend.Add("held-out loss", ll)
	p.Legend.Top = false
	p.Legend.Left = false
	p.Legend.XOffs = -vg.Points(10)
	p.Legend.YOffs = vg.Points(30)
	p.Y.Min, p.Y.Max = 0, math.Min(maxY, 5)
	if len(rounds) == 1 {
		p.X.Min, p.X.Max = 0, 2
	}
	if err := p.Save(8*vg.Inch, 5*vg.Inch, path); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// writeModel saves the final global model with the run's provenance.
func writeModel(path string, res *Result) error {
	if res.Params == nil {
		return nil // the run stopped before its final model
	}
	p := modelfile.Provenance{Source: "sim", Round: res.Summary.RoundsRun, Dataset: res.Summary.Config.Dataset,
		Federation:  fmt.Sprintf("sim (%d clients, seed %d)", res.Summary.Config.Clients, res.Summary.Config.Seed),
		Standardize: res.Standardize}
	if n := len(res.Rounds); n > 0 {
		p.Institutions = res.Rounds[n-1].Clients
	}
	if res.Summary.Epsilon != nil {
		p.DP, p.Epsilon, p.Delta = true, *res.Summary.Epsilon, res.Summary.Config.DPDelta
	}
	if res.Stats != nil && res.SchemaText != "" {
		b, err := json.Marshal(res.Stats)
		if err != nil {
			return err
		}
		p.Schema, p.Stats = res.SchemaText, b
	}
	return modelfile.Save(path, res.Spec, res.Params, p)
}
