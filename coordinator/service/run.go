package service

// The coordinator process: how its parts are wired together.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/coordinator/replica"
	"github.com/sovereign-fl/sovereign/metrics"
	"github.com/sovereign-fl/sovereign/model"
	"github.com/sovereign-fl/sovereign/p2p"
	"github.com/sovereign-fl/sovereign/p2p/pb"
)

// Options are how a coordinator process runs.
type Options struct {
	// ExitWhenDone returns once every study has ended (default: keep
	// serving status, models and the ledger).
	ExitWhenDone bool
	// Join starts a replica that never bootstraps and asks the running
	// ones to add it (`sovereign coordinator join`).
	Join bool
}

// Run runs one coordinator replica until ctx ends: the libp2p host, the
// Raft replica, the workers' cohort, the leader's scheduler of every
// study, the protocols of docs/ARCHITECTURE.md's table that a coordinator
// serves, the exports of its data folder and the monitoring endpoints.
// Log lines go to logOut.
func Run(ctx context.Context, cfg *Config, logOut io.Writer, o Options) error {
	exitWhenDone, join := o.ExitWhenDone, o.Join
	fed, _, sk, err := cfg.Setup()
	if err != nil {
		return err
	}
	log := p2p.NewLogger(logOut, cfg.Level, cfg.LogFormat, fed).With("coordinator", cfg.Name)
	cfg.Config.Federation = fed.Name
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if err := writeModelInfo(cfg, fed.Name); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	h, err := p2p.NewHost(ctx, p2p.HostConfig{Identity: sk, ListenAddrs: cfg.Listen, AnnounceAddrs: cfg.Announce, Federation: fed, Logger: log})
	if err != nil {
		return err
	}
	defer h.Close()
	rc := cfg.Replica
	rc.Dir, rc.Host, rc.Logger, rc.NoBootstrap = cfg.Data, h, log, join
	if spec, err := model.ParseSpec(cfg.Config.Model, cfg.Config.InC, cfg.Config.InH, cfg.Config.InW, cfg.Config.Classes); err == nil {
		rc.MaxModelBytes = 4 * int64(spec.NumParams())
	}
	node, err := replica.Open(rc)
	if err != nil {
		return fmt.Errorf("data: %s: %w", cfg.Data, err)
	}
	defer func() {
		if err := node.Shutdown(); err != nil {
			log.Warn("replica shutdown", "err", err)
		}
	}()
	fsm, reg := node.FSM(), node.Registry()
	if st := fsm.State(); st.Round > 0 || len(st.Ledger) > 0 {
		log.Info("state restored", "round", st.Round, "committed", st.CommittedRounds())
	}
	// The driver is built after the cohort; Hellos before it are deferred
	// (the cohort refuses them until Plan returns one, and workers retry).
	var planner atomic.Pointer[coordinator.Driver]
	cohort, err := coordinator.NewNetCohort(h, coordinator.NetCohortOptions{Logger: log, Info: func() (uint64, coordinator.Hash) {
		m, _ := fsm.LatestModel()
		return fsm.State().Round, m.Hash
	}, Plan: func(online int) *pb.StudyPlan {
		if d := planner.Load(); d != nil {
			return d.Plan(online)
		}
		return nil
	}})
	if err != nil {
		return err
	}
	defer cohort.Close()
	if err := h.ServeBlobs(reg, p2p.RoleWorker, p2p.RoleCoordinator); err != nil {
		return err
	}
	mon := metrics.NewCoordinator(metrics.CoordinatorSource{State: fsm.State, Online: cohort.Online, Bandwidth: h.Bandwidth,
		Raft: func() metrics.RaftStats {
			s := node.Stats()
			return metrics.RaftStats{State: s.State, Term: s.Term, CommitIndex: s.CommitIndex, AppliedIndex: s.AppliedIndex, LastIndex: s.LastIndex}
		}})
	d, err := coordinator.NewDriver(cfg.Config, fsm, mon.Replicator(node), reg, mon.Cohort(cohort), log)
	if err != nil {
		return err
	}
	d.Incompatible, d.Warnings = cohort.Incompatible, cohort.Warnings
	d.LedgerPath = filepath.Join(cfg.Data, coordinator.LedgerFileName)
	planner.Store(d)
	// Created studies (sovereign study start): one driver each, built from
	// the replicated spec on whichever replica leads.
	build := func(name string, c coordinator.Config) (*coordinator.Driver, error) {
		sd, err := coordinator.NewDriver(c, fsm.Study(name), mon.Replicator(node), reg, mon.Cohort(cohort), log.With("study", name))
		if err != nil {
			return nil, err
		}
		sd.LedgerPath = filepath.Join(cfg.Data, coordinator.StudyLedgerFileName(name))
		sd.Incompatible = func() map[coordinator.WorkerID][]string { return cohort.StudyIncompatible(sd) }
		sd.Warnings = func() map[coordinator.WorkerID][]string { return cohort.StudyWarnings(sd) }
		sd.Verdicts = func() map[coordinator.WorkerID][]string { return cohort.StudyVerdicts(sd) }
		return sd, nil
	}
	sched := coordinator.NewScheduler(d, build, log)
	sched.CheckPlan = cohort.CheckStudyPlan
	sched.NameOf = func(w coordinator.WorkerID) string {
		if id, err := peer.Decode(string(w)); err == nil {
			if m, ok := fed.Lookup(id); ok {
				return m.Name
			}
		}
		return string(w)
	}
	status := func() coordinator.Status {
		s := d.Status()
		if !node.IsLeader() || s.Stage == "" {
			// The driver runs on the leader only: a follower (or a leader
			// whose driver has not started) reports the stage its
			// replicated state is in.
			s.Stage = followerStage(fsm.State(), cfg.Config.Rounds)
		}
		s.Studies = sched.Statuses()
		if len(s.Studies) > 0 {
			s.Studies[0].Stage = s.Stage
		}
		return s
	}
	if err := coordinator.ServeStatus(h, cfg.Name, status, node.Leader); err != nil {
		return err
	}
	if err := coordinator.ServeStudies(h, sched, node.IsLeader, node.Leader, log); err != nil {
		return err
	}
	if err := node.ServeStatus(); err != nil {
		return err
	}
	// Workers confirm each survivor set with a majority of the replicas
	// before they sign or unmask it (security review L4).
	if err := coordinator.ServeSurvivors(h, fsm.StateOfRound); err != nil {
		return err
	}
	log.Info("listening", "peer", h.ID().String(), "addrs", strings.Join(h.Addrs(), ","))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	mon.WatchRaft(ctx, node.Raft())
	stopMonitoring, err := serveMonitoring(ctx, cfg, fed, node, fsm, mon, status, cohort.Online, log)
	if err != nil {
		return err
	}
	defer stopMonitoring()
	ledgerPath := filepath.Join(cfg.Data, coordinator.LedgerFileName)
	ex := &exporter{fsm: fsm, ledgerPath: ledgerPath, statePath: filepath.Join(cfg.Data, StateFileName), log: log}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(exportInterval)
		defer t.Stop()
		for {
			ex.export()
			if exitWhenDone && finished(fsm.State(), cfg.Config.Rounds) && createdStudiesEnded(fsm) {
				st := fsm.State()
				log.Info("federation finished", "round", st.Round, "committed", st.CommittedRounds(), "ledger_head", headHash(st))
				cancel()
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	if join {
		if err := replica.RequestJoin(ctx, h, fed, log); err != nil {
			cancel()
			wg.Wait()
			return err
		}
	}
	resume := cfg.Resume
	err = node.Lead(ctx, func(lctx context.Context) error {
		if resume {
			if ok, err := d.Resume(lctx); err != nil {
				return err
			} else if !ok {
				log.Info("--resume: the study has not failed; nothing to resume")
			}
			resume = false
		}
		// The scheduler drives every study until leadership ends; a
		// study that ends leaves the coordinator ready for the next.
		err := sched.Run(lctx)
		if err != nil && lctx.Err() == nil && !errors.Is(err, coordinator.ErrNotLeader) {
			log.Error("round driver stopped", "err", err)
		}
		return err
	})
	cancel()
	wg.Wait()
	ex.export()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("stopping", "reason", context.Cause(ctx))
	return nil
}
