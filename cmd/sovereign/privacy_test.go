package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/sovereign-fl/sovereign/aggregation/dp"
)

// runPrivacyArgs runs `sovereign privacy` with args and returns its output.
func runPrivacyArgs(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newPrivacyCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	err := cmd.Execute()
	return out.String(), err
}

func TestPrivacyTextReproducesOpacusDoctest(t *testing.T) {
	// One entry of the Opacus doctest alone: q=1e-4, σ=3, 4 steps.
	var acc dp.Accountant
	acc.Step(1e-4, 3, 4)
	wantEps, wantOrder, err := acc.Epsilon(1e-5, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := runPrivacyArgs(t, "--q", "1e-4", "--noise", "3", "--steps", "4", "--delta", "1e-5")
	if err != nil {
		t.Fatal(err)
	}
	want := "epsilon: " + strings.TrimSpace(fmtG6(wantEps)) + " (best order " + fmtV(wantOrder) + ", balle conversion)"
	if !strings.Contains(out, want) {
		t.Fatalf("output\n%s\nlacks %q", out, want)
	}
	if strings.Contains(out, "rdp") {
		t.Fatalf("RDP table printed without --orders:\n%s", out)
	}
}

func TestPrivacyOrdersTable(t *testing.T) {
	out, err := runPrivacyArgs(t, "--q", "0.01", "--noise", "2.5", "--steps", "50", "--orders", "1.5, 2.5,5")
	if err != nil {
		t.Fatal(err)
	}
	// TF Privacy's published values for q=0.01, σ=2.5, 50 steps.
	for _, line := range []string{"1.5        0.000650071", "2.5        0.00108542", "5          0.00218076"} {
		if !strings.Contains(out, line) {
			t.Errorf("output\n%s\nlacks %q", out, line)
		}
	}
	if !strings.Contains(out, "best order 5,") {
		t.Errorf("epsilon should use only the given orders (best 5):\n%s", out)
	}
}

func TestPrivacyJSON(t *testing.T) {
	out, err := runPrivacyArgs(t, "--q", "1", "--noise", "4.530877117", "--steps", "1",
		"--delta", "1e-6", "--orders", "20,22,24", "--target-epsilon", "3", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	for _, k := range []string{"epsilon", "order", "rdp", "steps", "max_steps"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("JSON lacks key %q:\n%s", k, out)
		}
	}
	var rep struct {
		Epsilon  float64 `json:"epsilon"`
		Order    float64 `json:"order"`
		Steps    int     `json:"steps"`
		MaxSteps int     `json:"max_steps"`
		RDP      []struct {
			Order float64 `json:"order"`
			RDP   float64 `json:"rdp"`
		} `json:"rdp"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	sigma := 4.530877117
	if len(rep.RDP) != 3 || rep.Steps != 1 {
		t.Fatalf("report %+v", rep)
	}
	for i, a := range []float64{20, 22, 24} {
		if rep.RDP[i].Order != a || math.Abs(rep.RDP[i].RDP-a/(2*sigma*sigma)) > 1e-15 {
			t.Errorf("rdp entry %d = %+v, want order %v rdp %v", i, rep.RDP[i], a, a/(2*sigma*sigma))
		}
	}
	// Order 22 is the integer order nearest the optimum 21.985; ε just over 1.
	if rep.Order != 22 || rep.Epsilon < 1 || rep.Epsilon > 1.0001 {
		t.Errorf("epsilon %v at order %v, want just over 1 at 22", rep.Epsilon, rep.Order)
	}
	// ε(T) for the plain Gaussian grows like √T; budget 3 fits several rounds.
	n, err := dp.MaxSteps(1, sigma, 3, 1e-6, []float64{20, 22, 24})
	if err != nil || rep.MaxSteps != n || n < 2 {
		t.Errorf("max_steps %d, dp.MaxSteps %d (%v)", rep.MaxSteps, n, err)
	}
	// Without --target-epsilon the key is absent.
	out, err = runPrivacyArgs(t, "--q", "0.1", "--noise", "1", "--json")
	if err != nil {
		t.Fatal(err)
	}
	raw = nil
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatal(err)
	}
	if _, ok := raw["max_steps"]; ok {
		t.Errorf("max_steps present without --target-epsilon:\n%s", out)
	}
}

func TestPrivacyTargetEpsilonText(t *testing.T) {
	out, err := runPrivacyArgs(t, "--q", "0.01", "--noise", "1.1", "--target-epsilon", "2")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := dp.MaxSteps(0.01, 1.1, 2, 1e-5, nil)
	if want := "max steps with epsilon <= 2: " + fmtV(float64(n)); !strings.Contains(out, want) {
		t.Fatalf("output\n%s\nlacks %q", out, want)
	}
	out, err = runPrivacyArgs(t, "--q", "0", "--noise", "1.1", "--target-epsilon", "2")
	if err != nil || !strings.Contains(out, "unlimited") {
		t.Fatalf("q=0: %v\n%s", err, out)
	}
	// The classic conversion is looser, so fewer rounds fit.
	out, err = runPrivacyArgs(t, "--q", "0.01", "--noise", "1.1", "--target-epsilon", "2", "--conversion", "mironov", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		MaxSteps int `json:"max_steps"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.MaxSteps >= n || rep.MaxSteps < 1 {
		t.Fatalf("mironov max_steps %d, balle %d", rep.MaxSteps, n)
	}
}

func TestPrivacyBadFlagsNameTheFlag(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--q", "1.5", "--noise", "1"}, "--q must be in [0, 1], got 1.5"},
		{[]string{"--q", "-0.1", "--noise", "1"}, "--q must be in [0, 1]"},
		{[]string{"--q", "0.1", "--noise", "0"}, "--noise must be a finite number > 0, got 0"},
		{[]string{"--q", "0.1", "--noise", "NaN"}, "--noise must be a finite number > 0"},
		{[]string{"--q", "0.1", "--noise", "1", "--steps", "-2"}, "--steps must be >= 0, got -2"},
		{[]string{"--q", "0.1", "--noise", "1", "--delta", "0"}, "--delta must be in (0, 1), got 0"},
		{[]string{"--q", "0.1", "--noise", "1", "--delta", "1"}, "--delta must be in (0, 1)"},
		{[]string{"--q", "0.1", "--noise", "1", "--orders", "2,abc"}, `--orders: "abc" is not a number`},
		{[]string{"--q", "0.1", "--noise", "1", "--orders", "2,1"}, "--orders: each order must be a finite number > 1, got 1"},
		{[]string{"--q", "0.1", "--noise", "1", "--orders", "2,,3"}, "--orders: empty entry"},
		{[]string{"--q", "0.1", "--noise", "1", "--target-epsilon", "0"}, "--target-epsilon must be a finite number > 0, got 0"},
		{[]string{"--q", "0.1", "--noise", "1", "--conversion", "rough"}, `--conversion must be balle or mironov, got "rough"`},
		{[]string{"--noise", "1"}, `required flag(s) "q" not set`},
		{[]string{"--q", "0.1"}, `required flag(s) "noise" not set`},
	}
	for _, c := range cases {
		_, err := runPrivacyArgs(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want it to contain %q", c.args, err, c.want)
		}
	}
}

func TestPrivacyRegisteredOnRoot(t *testing.T) {
	for _, c := range rootCmd.Commands() {
		if c.Name() == "privacy" {
			return
		}
	}
	t.Fatal("privacy is not a sub-command of sovereign")
}

func fmtG6(x float64) string { return fmt.Sprintf("%.6g", x) }

func fmtV(x float64) string { return fmt.Sprint(x) }
