package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/cobra"

	"github.com/sovereign-fl/sovereign/aggregation/dp"
	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/coordinator/service"
)

func init() { rootCmd.AddCommand(newStudyCmd()) }

func newStudyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "study",
		Short: "Start, list, pause, resume and stop the federation's studies, and plan one before it runs",
	}
	cmd.AddCommand(newStudyPlanCmd(), newStudyStartCmd(), newStudyListCmd(),
		newStudyOpCmd("pause", "Pause a study: no new round starts (a round in flight finishes)"),
		newStudyOpCmd("resume", "Resume a paused study, or retry a failed or budget-exhausted one after a config fix"),
		newStudyOpCmd("stop", "Stop a study for good (once its round in flight ends); its ledger stays"))
	return cmd
}

// studyPlan is what `sovereign study plan --json` prints.
type studyPlan struct {
	Model      string  `json:"model"`
	Parameters int     `json:"parameters"`
	Rounds     int     `json:"rounds"`
	Noise      float64 `json:"noise"`
	Delta      float64 `json:"delta"`
	// Epsilon[i] is the cumulative ε (of every institution taking part in
	// every round, q = 1) once model i+1 is committed; empty without DP.
	Epsilon []float64 `json:"epsilon"`
	// MaxEpsilon is the study's own budget (0: none) and BudgetRounds the
	// models it allows.
	MaxEpsilon   float64 `json:"max_epsilon"`
	BudgetRounds int     `json:"budget_rounds"`
	// Workers are the running federation's plan checks, when asked.
	Workers []incompatibleReport `json:"workers,omitempty"`
	// WorkersError says why they could not be asked; Online is how many
	// workers were online when a study file's plan was checked.
	WorkersError string `json:"workers_error,omitempty"`
	Online       int    `json:"online,omitempty"`
}

func newStudyPlanCmd() *cobra.Command {
	var path, fedPath, identity string
	var asJSON bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "plan --config coordinator.toml [--federation FILE --identity FILE] [--json]",
		Short: "Print the ε every institution would spend over a study's planned rounds, and which workers' policies would refuse it",
		Long: "plan reads a study file (name and [rounds]) or a coordinator configuration (its default\n" +
			"study) and prints the cumulative (ε, δ) ε an institution that takes part in every round\n" +
			"would have spent after each planned round, with the RDP accountant (Mironov 2017) at\n" +
			"q = 1, as the coordinator and each worker charge it, and the round at which the study's own\n" +
			"max_epsilon would end it. With --federation and --identity it also asks the running\n" +
			"federation's workers: for a study file (identity of role \"operator\"), the leader sends\n" +
			"this plan to every online worker and prints what each answered, without starting the study;\n" +
			"for a coordinator file, what the workers said of the running default study when they joined.\n" +
			"Plan checks name rules, never the institutions' budgets.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return errors.New("study plan: --config is required")
			}
			isStudy, err := isStudyFile(path)
			if err != nil {
				return err
			}
			var c coordinator.Config
			var req coordinator.StudyRequest
			if isStudy {
				if req, c, err = loadStudyFile(path); err != nil {
					return err
				}
			} else {
				cfg, err := service.Load(path)
				if err != nil {
					return err
				}
				c = cfg.Config
			}
			p, err := planOf(c)
			if err != nil {
				return fmt.Errorf("study plan: %w", err)
			}
			if fedPath != "" {
				if isStudy {
					req.Op = "check"
					p.Workers, p.Online, err = studyVerdicts(cmd.Context(), operatorFlags{fedPath: fedPath, identity: identity, timeout: 2 * time.Minute}, req)
				} else {
					p.Workers, err = planChecks(cmd.Context(), fedPath, identity, timeout)
				}
				if err != nil {
					p.WorkersError = err.Error()
				}
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(p)
			}
			printPlan(cmd.OutOrStdout(), p, fedPath != "")
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "study file, or coordinator configuration file (TOML)")
	cmd.Flags().StringVar(&fedPath, "federation", "", "federation file: also ask the running coordinators for their workers' plan checks")
	cmd.Flags().StringVar(&identity, "identity", "", "an enrolled key for --federation (default $SOVEREIGN_IDENTITY)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for each coordinator")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON")
	return cmd
}

// planOf computes the privacy trajectory of c's rounds.
func planOf(c coordinator.Config) (*studyPlan, error) {
	p := &studyPlan{Model: c.Model, Rounds: c.Rounds, Noise: c.DP.Noise, Delta: c.Delta, MaxEpsilon: c.MaxEpsilon, BudgetRounds: c.Rounds, Epsilon: []float64{}}
	if len(p.Model) > 64 {
		p.Model = p.Model[:61] + "..."
	}
	if sp, err := c.ModelSpec(); err == nil {
		p.Parameters = sp.NumParams()
	}
	if c.DP.Noise == 0 {
		return p, nil
	}
	a := &dp.Accountant{}
	for r := 1; r <= c.Rounds; r++ {
		if err := a.Step(coordinator.ReleaseQ, c.DP.Noise, 1); err != nil {
			return nil, err
		}
		e, _, err := a.Epsilon(c.Delta, nil)
		if err != nil {
			return nil, err
		}
		p.Epsilon = append(p.Epsilon, e)
		if c.MaxEpsilon > 0 && e > c.MaxEpsilon && p.BudgetRounds == c.Rounds {
			p.BudgetRounds = r - 1
		}
	}
	return p, nil
}

// planChecks asks the coordinators of fedPath for their workers' verdicts
// on the running study's plan.
func planChecks(ctx context.Context, fedPath, identity string, timeout time.Duration) ([]incompatibleReport, error) {
	r, err := firstStatus(ctx, fedPath, identity, timeout)
	if err != nil {
		return nil, err
	}
	return r.Incompatible, nil
}

func printPlan(w io.Writer, p *studyPlan, asked bool) {
	fmt.Fprintf(w, "study: model %s (%d parameters), %d rounds\n", p.Model, p.Parameters, p.Rounds)
	if p.Noise == 0 {
		fmt.Fprintln(w, "no differential privacy (noise = 0): institutions with a policy.max_epsilon refuse every round")
	} else {
		fmt.Fprintf(w, "ε of an institution in every round (σ = %g, δ = %g, q = 1):\n", p.Noise, p.Delta)
		for i, e := range p.Epsilon {
			r := i + 1
			if r <= 3 || r == len(p.Epsilon) || r%10 == 0 {
				fmt.Fprintf(w, "  after round %4d: ε = %.3f\n", r, e)
			}
		}
		if p.MaxEpsilon > 0 {
			fmt.Fprintf(w, "the study's max_epsilon %g allows %d of the %d rounds\n", p.MaxEpsilon, p.BudgetRounds, p.Rounds)
		}
		fmt.Fprintln(w, "an institution whose policy.max_epsilon is below a round's ε refuses that round and every later one")
	}
	if !asked {
		return
	}
	if len(p.Workers) == 0 && p.WorkersError == "" {
		fmt.Fprintln(w, "the running federation's workers: every one accepted the plan")
	}
	for _, iw := range p.Workers {
		if len(iw.Reasons) > 0 {
			fmt.Fprintf(w, "cannot take part: %s: %s\n", iw.Name, strings.Join(iw.Reasons, "; "))
		}
		if len(iw.Warnings) > 0 {
			fmt.Fprintf(w, "warning: %s: %s\n", iw.Name, strings.Join(iw.Warnings, "; "))
		}
	}
	if p.WorkersError != "" {
		fmt.Fprintf(w, "the running federation's workers: %s\n", p.WorkersError)
	}
}

// isStudyFile reports whether path is a study file (no identity: a
// coordinator file has one).
func isStudyFile(path string) (bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	var top map[string]any
	if err := toml.Unmarshal(b, &top); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	_, coord := top["identity"]
	return !coord, nil
}

// studyVerdicts asks the leader, through the study protocol, what every
// online worker says of req's plan.
func studyVerdicts(ctx context.Context, o operatorFlags, req coordinator.StudyRequest) ([]incompatibleReport, int, error) {
	var buf strings.Builder
	if err := o.send(ctx, &buf, req); err != nil {
		return nil, 0, err
	}
	var v coordinator.PlanVerdicts
	if err := json.Unmarshal([]byte(buf.String()), &v); err != nil {
		return nil, 0, fmt.Errorf("study check: malformed answer: %w", err)
	}
	var out []incompatibleReport
	for _, w := range v.Workers {
		out = append(out, incompatibleReport{Name: v.Names[w.Worker], Peer: string(w.Worker), Reasons: w.Reasons, Warnings: w.Warnings})
	}
	return out, v.Online, nil
}
