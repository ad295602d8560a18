package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/coordinator/service"
	"github.com/sovereign-fl/sovereign/internal/confdoc"
	"github.com/sovereign-fl/sovereign/p2p"
)

// studyFile is a study file (`sovereign study start --config`): a name and
// the [rounds] table of the coordinator file.
type studyFile struct {
	Name   string                  `toml:"name"`
	Rounds coordinator.RoundsTable `toml:"rounds"`
}

// studyDoc documents the study file; its [rounds] keys are the coordinator
// file's (configdoc.go).
var studyDoc = func() confdoc.File {
	docs := confdoc.Docs{
		"name": {Text: "The study's name: 1–63 of a-z, 0-9, `-`, `_`, not `default` (the coordinator file's own study). Names are never reused: an ended study's ledger stays.", Note: "required", Example: `"sepsis-2027"`},
	}
	for k, d := range service.ConfigDoc.Docs {
		if k == "rounds" || strings.HasPrefix(k, "rounds.") {
			docs[k] = d
		}
	}
	return confdoc.File{
		Name:  "study",
		Title: "Study file (`sovereign study start --config`)",
		Intro: "A named study on a running federation: `name` and a `[rounds]` table with the coordinator file's keys " +
			"(below, as there). Relative paths (`schema`, `init`) are resolved against the file's folder and their " +
			"contents are sent with the request, so every replica can drive the study.",
		Schema: reflect.TypeOf(studyFile{}),
		Docs:   docs,
	}
}()

// loadStudyFile reads a study file into the request that starts it.
func loadStudyFile(path string) (coordinator.StudyRequest, coordinator.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return coordinator.StudyRequest{}, coordinator.Config{}, err
	}
	var f studyFile
	if err := studyDoc.Decode(path, b, &f); err != nil {
		return coordinator.StudyRequest{}, coordinator.Config{}, err
	}
	if f.Name == "" {
		return coordinator.StudyRequest{}, coordinator.Config{}, fmt.Errorf("%s: name: missing (the study's name)", path)
	}
	if err := coordinator.CheckStudyName(f.Name); err != nil {
		return coordinator.StudyRequest{}, coordinator.Config{}, fmt.Errorf("%s: name: %w", path, err)
	}
	cfg, err := f.Rounds.Config(path, filepath.Dir(path), nil)
	if err != nil {
		return coordinator.StudyRequest{}, coordinator.Config{}, err
	}
	r := f.Rounds
	r.Model = &cfg.Model // an external model's layout, written out
	r.Init = nil         // its weights travel as the request's Init
	req := coordinator.StudyRequest{Op: "start", Name: f.Name, Spec: &coordinator.StudySpec{Rounds: r, SchemaText: cfg.SchemaText}}
	if cfg.InitParams != nil {
		req.Init = coordinator.EncodeParams(cfg.InitParams)
	}
	return req, cfg, nil
}

// memberHost opens a host for fedPath's federation with identity (default
// $SOVEREIGN_IDENTITY), which must be enrolled there — with role role when
// it is not "". The caller closes it.
func memberHost(ctx context.Context, fedPath, identity string, role p2p.Role, timeout time.Duration) (*p2p.Host, *p2p.Federation, error) {
	if fedPath == "" {
		return nil, nil, errors.New("--federation is required")
	}
	if identity == "" {
		identity = os.Getenv("SOVEREIGN_IDENTITY")
	}
	as := ", e.g. as role \"observer\""
	if role != "" {
		as = fmt.Sprintf(" as role %q", role)
	}
	if identity == "" {
		return nil, nil, fmt.Errorf("--identity is required (a key enrolled in the federation file%s)", as)
	}
	fed, err := p2p.LoadFederation(fedPath)
	if err != nil {
		return nil, nil, err
	}
	sk, err := p2p.LoadIdentity(identity)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: %w", err)
	}
	h, err := p2p.NewHost(ctx, p2p.HostConfig{Identity: sk, Federation: fed, StreamTimeout: timeout, DialTimeout: timeout})
	if err != nil {
		return nil, nil, err
	}
	if m, ok := fed.Lookup(h.ID()); !ok || role != "" && m.Role != role {
		h.Close()
		return nil, nil, fmt.Errorf("identity: peer %s of %s is not enrolled in %s%s", h.ID(), identity, fedPath, as)
	}
	return h, fed, nil
}

type operatorFlags struct {
	fedPath, identity string
	timeout           time.Duration
}

func (o *operatorFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.fedPath, "federation", "", "federation file")
	cmd.Flags().StringVar(&o.identity, "identity", "", "key enrolled as role \"operator\" (default $SOVEREIGN_IDENTITY)")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 2*time.Minute, "how long to wait for the coordinators (a start asks every online worker)")
}

func (o *operatorFlags) send(ctx context.Context, out io.Writer, req coordinator.StudyRequest) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	h, fed, err := memberHost(ctx, o.fedPath, o.identity, p2p.RoleOperator, o.timeout)
	if err != nil {
		return fmt.Errorf("study %s: %w", req.Op, err)
	}
	defer h.Close()
	for _, c := range fed.Coordinators() {
		_ = h.Connect(ctx, c.AddrInfo())
	}
	msg, err := coordinator.SendStudyRequest(ctx, h, req)
	if err != nil {
		return fmt.Errorf("study %s %s: %w", req.Op, req.Name, err)
	}
	fmt.Fprintln(out, msg)
	return nil
}

func newStudyStartCmd() *cobra.Command {
	var o operatorFlags
	var path string
	var allow bool
	cmd := &cobra.Command{
		Use:   "start --config study.toml --federation FILE --identity FILE [--allow-incompatible]",
		Short: "Start a named study on the running federation (replicated through Raft; any replica takes it)",
		Long: "start reads a study file (name and a [rounds] table with the coordinator file's keys), sends it to\n" +
			"the federation's coordinators, and the leader asks every online worker to check the study's plan\n" +
			"against its data and policy. If any cannot take part, the start is refused with each such worker\n" +
			"and its reasons named (--allow-incompatible starts it anyway; they are then never sampled).\n" +
			"The study's rounds interleave with the other running studies', one round at a time.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return errors.New("study start: --config is required")
			}
			req, _, err := loadStudyFile(path)
			if err != nil {
				return err
			}
			req.AllowIncompatible = allow
			return o.send(cmd.Context(), cmd.OutOrStdout(), req)
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "study file (TOML)")
	cmd.Flags().BoolVar(&allow, "allow-incompatible", false, "start even if some online workers cannot take part (they are left out)")
	o.add(cmd)
	return cmd
}

func newStudyOpCmd(op, short string) *cobra.Command {
	var o operatorFlags
	var reason, path string
	cmd := &cobra.Command{
		Use:   op + " NAME --federation FILE --identity FILE",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := coordinator.StudyRequest{Op: op, Name: args[0], Reason: reason}
			if path != "" {
				sr, _, err := loadStudyFile(path)
				if err != nil {
					return err
				}
				if sr.Name != args[0] {
					return fmt.Errorf("study resume %s: %s names study %q", args[0], path, sr.Name)
				}
				req.Spec = sr.Spec
			}
			return o.send(cmd.Context(), cmd.OutOrStdout(), req)
		},
	}
	if op == "resume" {
		cmd.Use = op + " NAME [--config study.toml] --federation FILE --identity FILE"
		cmd.Flags().StringVarP(&path, "config", "c", "", "the study file with the fix (same name, model, input, classes and schema): replaces a failed or budget-exhausted created study's configuration")
	} else {
		cmd.Flags().StringVar(&reason, "reason", "", "why, recorded with the study")
	}
	o.add(cmd)
	return cmd
}

// studyReport is one study in `sovereign study list --json`.
type studyReport struct {
	Name            string               `json:"name"`
	State           string               `json:"state"`
	EndReason       string               `json:"end_reason,omitempty"`
	Model           string               `json:"model"`
	CommittedRounds uint64               `json:"committed_rounds"`
	Attempts        uint64               `json:"attempts"`
	PlannedRounds   uint64               `json:"planned_rounds"`
	RecentFailures  []string             `json:"recent_failures,omitempty"`
	Epsilon         float64              `json:"epsilon"`
	Accuracy        float64              `json:"accuracy"`
	ETASeconds      float64              `json:"eta_seconds"`
	LedgerHead      string               `json:"ledger_head"`
	LedgerLength    uint64               `json:"ledger_length"`
	Incompatible    []incompatibleReport `json:"incompatible,omitempty"`
}

func newStudyListCmd() *cobra.Command {
	var fedPath, identity string
	var asJSON bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "list --federation FILE --identity FILE [--json]",
		Short: "List the federation's studies: state, models committed vs rounds started, ε, last failures, ETA",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if fedPath == "" {
				return errors.New("study list: --federation is required")
			}
			r, err := firstStatus(cmd.Context(), fedPath, identity, timeout)
			if err != nil {
				return fmt.Errorf("study list: %w", err)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(r.Studies)
			}
			printStudies(cmd.OutOrStdout(), r.Studies)
			return nil
		},
	}
	cmd.Flags().StringVar(&fedPath, "federation", "", "federation file")
	cmd.Flags().StringVar(&identity, "identity", "", "an enrolled key (default $SOVEREIGN_IDENTITY)")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for each coordinator")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printStudies(w io.Writer, ss []studyReport) {
	for _, s := range ss {
		fmt.Fprintf(w, "study %s: %s, model %s, %d of %d models committed in %d rounds, ε %.3g", s.Name, s.State, s.Model, s.CommittedRounds, s.PlannedRounds, s.Attempts, s.Epsilon)
		if s.ETASeconds > 0 {
			fmt.Fprintf(w, ", ETA %s", (time.Duration(s.ETASeconds * float64(time.Second))).Round(time.Second))
		}
		fmt.Fprintln(w)
		if s.EndReason != "" {
			fmt.Fprintf(w, "  ended: %s\n", s.EndReason)
		}
		for _, f := range s.RecentFailures {
			fmt.Fprintf(w, "  failed %s\n", f)
		}
		for _, iw := range s.Incompatible {
			if len(iw.Reasons) > 0 {
				fmt.Fprintf(w, "  cannot take part: %s: %s\n", iw.Name, strings.Join(iw.Reasons, "; "))
			}
		}
		fmt.Fprintf(w, "  ledger head %s (%d entries)\n", s.LedgerHead, s.LedgerLength)
	}
}

// firstStatus returns the status of the first coordinator of fedPath that
// answers, asked with identity (default $SOVEREIGN_IDENTITY).
func firstStatus(ctx context.Context, fedPath, identity string, timeout time.Duration) (statusReport, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*timeout)
	defer cancel()
	h, fed, err := memberHost(ctx, fedPath, identity, "", timeout)
	if err != nil {
		return statusReport{}, err
	}
	defer h.Close()
	var errs []string
	for _, r := range queryStatus(ctx, h, fed) {
		if r.Reachable {
			return r, nil
		}
		errs = append(errs, r.Coordinator+": "+r.Error)
	}
	return statusReport{}, fmt.Errorf("no coordinator answered (%s)", strings.Join(errs, "; "))
}
