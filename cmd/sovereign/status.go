package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sovereign-fl/sovereign/coordinator/replica"
	"github.com/sovereign-fl/sovereign/p2p"
	"github.com/sovereign-fl/sovereign/p2p/pb"
)

func init() { rootCmd.AddCommand(newStatusCmd()) }

// statusReport is what `sovereign status --json` prints for each coordinator.
type statusReport struct {
	Coordinator     string `json:"coordinator"`
	Peer            string `json:"peer"`
	Reachable       bool   `json:"reachable"`
	Error           string `json:"error,omitempty"`
	Round           uint64 `json:"round"`
	Stage           string `json:"stage"`
	InFlight        bool   `json:"in_flight"`
	CommittedRounds uint64 `json:"committed_rounds"`
	Failures        uint64 `json:"failures"`
	// StudyState is "running" or how the study ended (finished, failed,
	// budget-exhausted), EndReason why; RecentFailures the last round
	// failures; PlannedRounds the study's models; ETASeconds the time to
	// the last of them (0 unknown).
	StudyState     string   `json:"study_state"`
	EndReason      string   `json:"end_reason,omitempty"`
	RecentFailures []string `json:"recent_failures,omitempty"`
	PlannedRounds  uint64   `json:"planned_rounds"`
	// Incompatible are the workers that cannot take part, with why.
	Incompatible  []incompatibleReport `json:"incompatible,omitempty"`
	ETASeconds    float64              `json:"eta_seconds"`
	Accuracy      float64              `json:"accuracy"`
	AccuracyRound uint64               `json:"accuracy_round"`
	LedgerHead    string               `json:"ledger_head"`
	LedgerLength  uint64               `json:"ledger_length"`
	Online        []memberReport       `json:"online"`
	Offline       []memberReport       `json:"offline"`
	// Leader is the Raft leader this coordinator knows ("" if none), by
	// name and peer: a follower's answer is the redirect to the leader.
	Leader     string `json:"leader"`
	LeaderPeer string `json:"leader_peer"`
	// Replicas is this coordinator's view of every replica of its Raft
	// group (its own entry first): state, leader, term, commit and applied
	// index. Empty when the coordinator does not answer the replica status
	// protocol.
	Replicas []replicaReport `json:"replicas"`
	// ReplicasError says why Replicas is empty.
	ReplicasError string `json:"replicas_error,omitempty"`
	// Studies are every study of the federation, the default one first.
	Studies []studyReport `json:"studies"`
}

// replicaReport is one replica's Raft figures, as reported by a coordinator.
type replicaReport struct {
	Name              string `json:"name"`
	Peer              string `json:"peer"`
	State             string `json:"state"`
	Leader            string `json:"leader"`
	LeaderPeer        string `json:"leader_peer"`
	Term              uint64 `json:"term"`
	CommitIndex       uint64 `json:"commit_index"`
	AppliedIndex      uint64 `json:"applied_index"`
	LastIndex         uint64 `json:"last_index"`
	LastSnapshotIndex uint64 `json:"last_snapshot_index"`
	Voters            int    `json:"voters"`
	Error             string `json:"error,omitempty"`
}

type memberReport struct {
	Name string `json:"name"`
	Peer string `json:"peer"`
	Role string `json:"role"`
}

func newStatusCmd() *cobra.Command {
	var fedPath, identity string
	var asJSON bool
	var timeout, wait time.Duration
	cmd := &cobra.Command{
		Use:   "status --federation FILE --identity FILE [--json]",
		Short: "Ask the coordinators of a federation for their Raft role, term, commit index, round, stage, members online, accuracy and ledger head",
		Long: "status connects to every coordinator listed in the federation file with an enrolled identity\n" +
			"(an observer entry is the usual choice; see docs/runbook.md) and prints what each reports:\n" +
			"its Raft state (leader or follower), the leader it knows, term, commit and applied index,\n" +
			"and the round, stage, members online, latest accuracy and ledger head of its replicated state.\n" +
			"The identity defaults to $SOVEREIGN_IDENTITY. It exits non-zero if no coordinator answers.\n" +
			"With --wait D it asks again until every coordinator answers or D has passed (for a\n" +
			"federation that is starting: coordinators that do not listen yet refuse the connection).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout+wait)
			defer cancel()
			h, fed, err := memberHost(ctx, fedPath, identity, "", timeout)
			if err != nil {
				return fmt.Errorf("status: %w", err)
			}
			defer h.Close()
			reports := waitStatus(ctx, h, fed, timeout, wait)
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(reports); err != nil {
					return err
				}
			} else {
				printStatus(cmd.OutOrStdout(), reports)
			}
			for _, r := range reports {
				if r.Reachable {
					return nil
				}
			}
			return errors.New("status: no coordinator answered")
		},
	}
	cmd.Flags().StringVar(&fedPath, "federation", "", "federation file")
	cmd.Flags().StringVar(&identity, "identity", "", "identity key file of an enrolled member (default $SOVEREIGN_IDENTITY)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for each coordinator's answer")
	cmd.Flags().DurationVar(&wait, "wait", 0, "keep asking until every coordinator answers or this much time has passed (e.g. 10s)")
	return cmd
}

// statusRetry is the pause between two rounds of questions under --wait.
const statusRetry = 250 * time.Millisecond

// waitStatus asks every coordinator (each attempt bounded by timeout) and,
// while some do not answer and wait has not passed, asks again.
func waitStatus(ctx context.Context, h *p2p.Host, fed *p2p.Federation, timeout, wait time.Duration) []statusReport {
	until := time.Now().Add(wait)
	for {
		actx, cancel := context.WithTimeout(ctx, timeout)
		// A failed dial puts the peer in libp2p's dial backoff; a coordinator
		// that starts listening a moment later must be dialled again.
		reports := queryStatus(network.WithForceDirectDial(actx, "status --wait"), h, fed)
		cancel()
		all := true
		for _, r := range reports {
			all = all && r.Reachable
		}
		if all || wait <= 0 || !time.Now().Before(until) {
			return reports
		}
		select {
		case <-ctx.Done():
			return reports
		case <-time.After(statusRetry):
		}
	}
}

func queryStatus(ctx context.Context, h *p2p.Host, fed *p2p.Federation) []statusReport {
	var out []statusReport
	for _, c := range fed.Coordinators() {
		r := statusReport{Coordinator: c.Name, Peer: c.ID.String()}
		var resp pb.StatusResponse
		err := h.Connect(ctx, c.AddrInfo())
		if err == nil {
			err = p2p.NewClient(h).Request(ctx, c.ID, p2p.ProtoStatus, &pb.StatusRequest{IncludeMembers: true}, &resp)
		}
		if err != nil {
			r.Error = err.Error()
			out = append(out, r)
			continue
		}
		r.Reachable = true
		if l, err := peer.IDFromBytes(resp.Leader); err == nil && len(resp.Leader) > 0 {
			r.Leader, r.LeaderPeer = memberName(fed, l), l.String()
		}
		if r.Replicas, err = queryReplicas(ctx, h, fed, c.ID); err != nil {
			r.ReplicasError = err.Error()
		}
		r.Round, r.Stage, r.InFlight = resp.Round, resp.Stage, resp.InFlight
		r.CommittedRounds, r.Failures = resp.CommittedRounds, resp.Failures
		r.StudyState, r.EndReason, r.RecentFailures = resp.StudyState, resp.EndReason, resp.RecentFailures
		r.PlannedRounds, r.ETASeconds = resp.PlannedRounds, resp.EtaSeconds
		for _, iw := range resp.Incompatible {
			ir := incompatibleReport{Name: iw.Name, Reasons: iw.Reasons, Warnings: iw.Warnings}
			if id, err := peer.IDFromBytes(iw.PeerId); err == nil {
				ir.Peer = id.String()
			}
			r.Incompatible = append(r.Incompatible, ir)
		}
		r.Accuracy, r.AccuracyRound = resp.Accuracy, resp.AccuracyRound
		r.LedgerHead, r.LedgerLength = hex.EncodeToString(resp.LedgerHead), resp.LedgerLength
		r.Studies = []studyReport{}
		for _, ss := range resp.Studies {
			sr := studyReport{Name: ss.Name, State: ss.State, EndReason: ss.EndReason, Model: ss.Model, CommittedRounds: ss.CommittedRounds,
				Attempts: ss.Attempts, PlannedRounds: ss.PlannedRounds, RecentFailures: ss.RecentFailures, Epsilon: ss.Epsilon,
				Accuracy: ss.Accuracy, ETASeconds: ss.EtaSeconds, LedgerHead: hex.EncodeToString(ss.LedgerHead), LedgerLength: ss.LedgerLength}
			for _, iw := range ss.Incompatible {
				ir := incompatibleReport{Name: iw.Name, Reasons: iw.Reasons, Warnings: iw.Warnings}
				if id, err := peer.IDFromBytes(iw.PeerId); err == nil {
					ir.Peer = id.String()
				}
				sr.Incompatible = append(sr.Incompatible, ir)
			}
			r.Studies = append(r.Studies, sr)
		}
		r.Online, r.Offline = []memberReport{}, []memberReport{}
		for _, m := range resp.Members {
			id, err := peer.IDFromBytes(m.PeerId)
			if err != nil {
				continue
			}
			mr := memberReport{Name: m.Name, Peer: id.String(), Role: roleName(m.Role)}
			if m.Connected {
				r.Online = append(r.Online, mr)
			} else {
				r.Offline = append(r.Offline, mr)
			}
		}
		out = append(out, r)
	}
	return out
}

// memberName returns p's name in fed, or its peer ID if not enrolled.
func memberName(fed *p2p.Federation, p peer.ID) string {
	if m, ok := fed.Lookup(p); ok {
		return m.Name
	}
	return p.String()
}

// queryReplicas asks coordinator c for its view of the Raft group
// (replica.StatusProtocolID).
func queryReplicas(ctx context.Context, h *p2p.Host, fed *p2p.Federation, c peer.ID) ([]replicaReport, error) {
	var out wrapperspb.BytesValue
	if err := p2p.NewClient(h).Request(ctx, c, replica.StatusProtocolID, wrapperspb.Bytes(nil), &out); err != nil {
		return nil, err
	}
	var stats []replica.WireStats
	if err := json.Unmarshal(out.Value, &stats); err != nil {
		return nil, fmt.Errorf("replica status from %s: malformed: %w", c, err)
	}
	reps := make([]replicaReport, 0, len(stats))
	name := func(s string) string {
		if id, err := peer.Decode(s); err == nil {
			return memberName(fed, id)
		}
		return s
	}
	for _, s := range stats {
		rr := replicaReport{Name: name(s.ID), Peer: s.ID, State: s.State, Term: s.Term,
			CommitIndex: s.CommitIndex, AppliedIndex: s.AppliedIndex, LastIndex: s.LastIndex,
			LastSnapshotIndex: s.LastSnapshotIndex, Voters: len(s.Voters), Error: s.Err}
		if s.Leader != "" {
			rr.Leader, rr.LeaderPeer = name(s.Leader), s.Leader
		}
		reps = append(reps, rr)
	}
	return reps, nil
}

func roleName(r pb.Role) string {
	switch r {
	case pb.Role_ROLE_WORKER:
		return "worker"
	case pb.Role_ROLE_COORDINATOR:
		return "coordinator"
	case pb.Role_ROLE_OBSERVER:
		return "observer"
	}
	return "unknown"
}

func printStatus(w io.Writer, reports []statusReport) {
	for _, r := range reports {
		if !r.Reachable {
			fmt.Fprintf(w, "coordinator %s (%s): unreachable: %s\n", r.Coordinator, r.Peer, r.Error)
			continue
		}
		fmt.Fprintf(w, "coordinator %s (%s)\n", r.Coordinator, r.Peer)
		own := replicaReport{State: "unknown"}
		if len(r.Replicas) > 0 && r.Replicas[0].Peer == r.Peer {
			own = r.Replicas[0]
		}
		leader := r.Leader
		if leader == "" {
			leader = "none known"
		}
		fmt.Fprintf(w, "  raft %s, leader %s, term %d, commit index %d, applied index %d, %d voters\n",
			strings.ToLower(own.State), leader, own.Term, own.CommitIndex, own.AppliedIndex, own.Voters)
		// This line's wording is what scripts (the runbook's) grep.
		fmt.Fprintf(w, "  round %d, stage %s, in flight %v, %d rounds committed, %d failed since\n", r.Round, r.Stage, r.InFlight, r.CommittedRounds, r.Failures)
		fmt.Fprintf(w, "  study %s: %d of %d models committed in %d rounds", r.StudyState, r.CommittedRounds, r.PlannedRounds, r.Round)
		if r.ETASeconds > 0 {
			fmt.Fprintf(w, ", ETA %s", (time.Duration(r.ETASeconds * float64(time.Second))).Round(time.Second))
		}
		fmt.Fprintln(w)
		if r.EndReason != "" {
			fmt.Fprintf(w, "  ended: %s\n", r.EndReason)
		}
		for _, iw := range r.Incompatible {
			if len(iw.Reasons) > 0 {
				fmt.Fprintf(w, "  cannot take part: %s: %s\n", iw.Name, strings.Join(iw.Reasons, "; "))
			}
			if len(iw.Warnings) > 0 {
				fmt.Fprintf(w, "  warning: %s: %s\n", iw.Name, strings.Join(iw.Warnings, "; "))
			}
		}
		for _, f := range r.RecentFailures {
			fmt.Fprintf(w, "  failed %s\n", f)
		}
		if r.AccuracyRound > 0 {
			fmt.Fprintf(w, "  accuracy %.4f (model of round %d)\n", r.Accuracy, r.AccuracyRound)
		}
		fmt.Fprintf(w, "  ledger head %s (%d entries)\n", r.LedgerHead, r.LedgerLength)
		if len(r.Studies) > 1 {
			for _, s := range r.Studies {
				fmt.Fprintf(w, "  study %s: %s, %d of %d models committed in %d rounds, ε %.3g\n", s.Name, s.State, s.CommittedRounds, s.PlannedRounds, s.Attempts, s.Epsilon)
			}
		}
		fmt.Fprintf(w, "  online (%d):", len(r.Online))
		for _, m := range r.Online {
			fmt.Fprintf(w, " %s", m.Name)
		}
		fmt.Fprintln(w)
	}
}

// incompatibleReport is a worker whose plan check said it cannot take part.
type incompatibleReport struct {
	Name     string   `json:"name"`
	Peer     string   `json:"peer"`
	Reasons  []string `json:"reasons"`
	Warnings []string `json:"warnings,omitempty"`
}
