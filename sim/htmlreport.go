package sim

import (
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"os"
	"time"

	"github.com/sovereign-fl/sovereign/svgplot"
)

// ReportFile is the self-contained HTML report `sovereign sim` writes.
const ReportFile = "report.html"

// plotTitle names the run's dataset, model, partition and strategy.
func plotTitle(c Config) string {
	t := fmt.Sprintf("%s · %s · %s partition · %s", c.Dataset, c.Model, c.Partition, c.Strategy)
	if c.Secure {
		t += " · SecAgg+"
	}
	if c.DPNoise > 0 {
		t += fmt.Sprintf(" · DP σ=%g", c.DPNoise)
	}
	return t
}

type reportData struct {
	Title      string
	Generated  string
	Summary    Summary
	ConfigJSON string
	Charts     []template.HTML
	Rounds     []RoundMetrics
	HasEpsilon bool
	Wall       string
}

var reportTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"f4": func(v float64) string {
		if math.IsNaN(v) {
			return "—"
		}
		return fmt.Sprintf("%.4f", v)
	},
	"eps": func(p *float64) string {
		if p == nil {
			return "no differential privacy"
		}
		return fmt.Sprintf("%.4g", *p)
	},
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Sovereign simulation: {{.Title}}</title>
<style>body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right;font-size:.9em}
th{background:#eee}pre{background:#f6f6f6;padding:.6em;font-size:.85em}.charts{display:flex;flex-wrap:wrap;gap:1em}</style></head>
<body>
<h1>Sovereign simulation</h1>
<p id="title">{{.Title}}</p>
<p class="muted">Written {{.Generated}}. Self-contained: the charts are inline SVG.</p>
<h2>Summary</h2>
<table id="summary">
<tr><th>rounds run</th><td>{{.Summary.RoundsRun}}</td></tr>
<tr><th>final accuracy</th><td>{{f4 .Summary.FinalAccuracy}}</td></tr>
<tr><th>best accuracy</th><td>{{f4 .Summary.BestAccuracy}}</td></tr>
<tr><th>final loss</th><td>{{f4 .Summary.FinalLoss}}</td></tr>
<tr><th>rounds to target</th><td>{{if .Summary.RoundsToTarget}}{{.Summary.RoundsToTarget}}{{else}}not reached{{end}}</td></tr>
<tr><th>ε (δ = {{.Summary.Config.DPDelta}})</th><td id="epsilon">{{eps .Summary.Epsilon}}</td></tr>
<tr><th>parameters</th><td>{{.Summary.Parameters}}</td></tr>
<tr><th>train / test examples</th><td>{{.Summary.TrainExamples}} / {{.Summary.TestExamples}}</td></tr>
<tr><th>wall time</th><td id="wall">{{.Wall}}</td></tr>
</table>
<h2>Curves</h2>
<div class="charts">{{range .Charts}}{{.}}{{end}}</div>
<h2>Per round</h2>
<table id="rounds"><tr><th>round</th><th>accuracy</th><th>loss</th><th>local accuracy</th><th>train loss</th><th>sampled</th><th>clients</th><th>dropped</th><th>rejected</th>{{if .HasEpsilon}}<th>ε</th>{{end}}<th>seconds</th></tr>
{{$eps := .HasEpsilon}}{{range .Rounds}}<tr class="round"><td>{{.Round}}</td><td>{{f4 .Accuracy}}</td><td>{{f4 .Loss}}</td><td>{{f4 .LocalAccuracy}}</td><td>{{f4 .TrainLoss}}</td><td>{{.Sampled}}</td><td>{{.Clients}}</td><td>{{.Dropped}}</td><td>{{.Rejected}}</td>{{if $eps}}<td>{{f4 .Epsilon}}</td>{{end}}<td>{{printf "%.3f" .Seconds}}</td></tr>
{{end}}</table>
<h2>Configuration</h2>
<pre id="config">{{.ConfigJSON}}</pre>
</body></html>
`))

// writeReport writes the HTML report of res to path.
func writeReport(path string, res *Result, now time.Time) error {
	cfg, err := json.MarshalIndent(res.Summary.Config, "", "  ")
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	n := len(res.Rounds)
	x := make([]float64, n)
	col := func(f func(RoundMetrics) float64) []float64 {
		out := make([]float64, n)
		for i, m := range res.Rounds {
			out[i] = f(m)
		}
		return out
	}
	for i, m := range res.Rounds {
		x[i] = float64(m.Round)
	}
	d := reportData{Title: plotTitle(res.Summary.Config), Generated: now.UTC().Format(time.RFC3339), Summary: res.Summary,
		ConfigJSON: string(cfg), Rounds: res.Rounds, Wall: (time.Duration(res.Summary.WallSeconds * float64(time.Second))).Round(time.Millisecond).String()}
	d.Charts = append(d.Charts,
		template.HTML(svgplot.String(svgplot.Chart{ID: "accuracy", Title: "Accuracy", XLabel: "round", YLabel: "accuracy", YMin: 0, YMax: 1},
			svgplot.Series{Name: "held-out", X: x, Y: col(func(m RoundMetrics) float64 { return m.Accuracy })},
			svgplot.Series{Name: "local (participants)", X: x, Y: col(func(m RoundMetrics) float64 { return m.LocalAccuracy })})),
		template.HTML(svgplot.String(svgplot.Chart{ID: "loss", Title: "Loss", XLabel: "round", YLabel: "cross-entropy loss"},
			svgplot.Series{Name: "held-out", X: x, Y: col(func(m RoundMetrics) float64 { return m.Loss }), Color: "#d62728"},
			svgplot.Series{Name: "local training", X: x, Y: col(func(m RoundMetrics) float64 { return m.TrainLoss }), Color: "#ff7f0e"})),
		template.HTML(svgplot.String(svgplot.Chart{ID: "clients", Title: "Clients per round", XLabel: "round", YLabel: "clients"},
			svgplot.Series{Name: "aggregated", X: x, Y: col(func(m RoundMetrics) float64 { return float64(m.Clients) })},
			svgplot.Series{Name: "dropped", X: x, Y: col(func(m RoundMetrics) float64 { return float64(m.Dropped) })},
			svgplot.Series{Name: "rejected", X: x, Y: col(func(m RoundMetrics) float64 { return float64(m.Rejected) })})),
	)
	if res.Summary.Epsilon != nil {
		d.HasEpsilon = true
		d.Charts = append(d.Charts, template.HTML(svgplot.String(svgplot.Chart{ID: "epsilon-chart", Title: "Privacy spent",
			XLabel: "round", YLabel: fmt.Sprintf("ε (δ = %g)", res.Summary.Config.DPDelta)},
			svgplot.Series{Name: "ε", X: x, Y: col(func(m RoundMetrics) float64 { return m.Epsilon }), Color: "#9467bd"})))
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := reportTmpl.Execute(f, d); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}
