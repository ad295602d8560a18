package service

import (
	"context"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/coordinator/replica"
	"github.com/sovereign-fl/sovereign/dashboard"
	"github.com/sovereign-fl/sovereign/metrics"
	"github.com/sovereign-fl/sovereign/model"
	"github.com/sovereign-fl/sovereign/model/modelfile"
	"github.com/sovereign-fl/sovereign/model/safetensors"
	"github.com/sovereign-fl/sovereign/p2p"
)

// serveMonitoring starts the metrics endpoint and the dashboard the
// configuration asks for; stop closes them.
func serveMonitoring(ctx context.Context, cfg *Config, fed *p2p.Federation, node *replica.Node, fsm *coordinator.FSM,
	mon *metrics.Coordinator, status func() coordinator.Status, online func() []coordinator.WorkerID, log *slog.Logger) (stop func(), err error) {
	var servers []*metrics.Server
	stop = func() {
		for _, s := range servers {
			_ = s.Close()
		}
	}
	if cfg.MetricsListen != "" {
		s, err := metrics.ListenLogged("metrics_listen", cfg.MetricsListen, mon.Handler(), log)
		if err != nil {
			return stop, err
		}
		servers = append(servers, s)
		log.Info("metrics listening", "addr", "http://"+s.Addr()+"/metrics")
	}
	if cfg.DashboardListen != "" {
		name := func(id string) string {
			if pid, err := peer.Decode(id); err == nil {
				if m, ok := fed.Lookup(pid); ok {
					return m.Name
				}
			}
			return id
		}
		dh := dashboard.New(dashboard.Source{
			Federation: fed.Name, Self: cfg.Name, Rounds: cfg.Config.Rounds,
			State: fsm.State,
			Stage: func() string { return status().Stage },
			Leader: func() string {
				if l := node.Leader(); l != "" {
					return name(l.String())
				}
				return ""
			},
			Replicas: func(ctx context.Context) []dashboard.Replica {
				var out []dashboard.Replica
				for _, st := range node.ClusterStats(ctx) {
					r := dashboard.Replica{Name: name(st.ID.String()), ID: st.ID.String(), State: st.State, Term: st.Term,
						CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex, Err: st.Err}
					if st.Leader != "" {
						r.Leader = name(st.Leader.String())
					}
					out = append(out, r)
				}
				return out
			},
			Workers: func() []dashboard.Worker {
				var out []dashboard.Worker
				for _, m := range fed.Members() {
					if m.Role == p2p.RoleWorker {
						out = append(out, dashboard.Worker{Name: m.Name, ID: coordinator.WorkerID(m.ID.String())})
					}
				}
				return out
			},
			Online: online,
			// The replicated refusals: every replica's page lists the
			// same ones, whoever led when they arrived.
			Refusals: func() []metrics.Refusal {
				st := fsm.State()
				out := make([]metrics.Refusal, len(st.Refusals))
				for i, r := range st.Refusals {
					out[i] = metrics.Refusal{Worker: r.Worker, Round: r.Round, Reason: r.Reason,
						Label: metrics.RefusalReason(r.Reason), Time: time.UnixMilli(r.AtMs)}
				}
				return out
			},
			Model: func(round uint64) (*safetensors.File, error) {
				return committedModelFile(cfg, fed.Name, fsm.State(), node.Registry(), round)
			},
			Name:  name,
			Token: cfg.DashboardToken,
		})
		go dh.Run(ctx, time.Second)
		s, err := metrics.ListenLogged("dashboard_listen", cfg.DashboardListen, dh, log)
		if err != nil {
			return stop, err
		}
		servers = append(servers, s)
		log.Info("dashboard listening", "addr", "http://"+s.Addr()+"/")
	}
	return stop, nil
}

// committedModelFile is the model committed in round as a safetensors file
// with the provenance `sovereign export` writes (dashboard.ErrNoModel if the
// ledger has no entry for the round).
func committedModelFile(cfg *Config, federation string, st coordinator.State, reg coordinator.ModelStore, round uint64) (*safetensors.File, error) {
	var entry *coordinator.LedgerEntry
	for i := range st.Ledger {
		if st.Ledger[i].Round == round {
			entry = &st.Ledger[i]
		}
	}
	if entry == nil {
		return nil, dashboard.ErrNoModel
	}
	c := cfg.Config
	spec, err := model.ParseSpec(c.Model, c.InC, c.InH, c.InW, c.Classes)
	if err != nil {
		return nil, err
	}
	params, err := reg.Get(entry.ModelHash)
	if err != nil {
		return nil, err
	}
	p := modelfile.Provenance{Source: "coordinator", Round: int(entry.Round), LedgerEntry: entry.Hash.String(),
		Institutions: len(entry.Participants), Federation: federation}
	if c.DP.Noise > 0 {
		p.DP, p.Epsilon, p.Delta = true, entry.Epsilon, c.Delta
	}
	return modelfile.Encode(spec, params, p)
}
