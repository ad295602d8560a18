package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/coordinator/raftstore"
	"github.com/sovereign-fl/sovereign/coordinator/rafttransport"
	"github.com/sovereign-fl/sovereign/p2p"
)

// Raft timing defaults of a replica. The heartbeat and election timeouts
// are half of hashicorp/raft's (1 s): a follower notices a dead leader
// after 0.5–1 s instead of 1–2 s, which keeps failover under 2 s with real
// processes (docs/bench-replica.md). The leader lease keeps raft's 500 ms:
// with 250 ms a leader replicating a 40 MB model on a loaded machine was
// seen to step down.
const (
	DefaultHeartbeatTimeout   = 500 * time.Millisecond
	DefaultElectionTimeout    = 500 * time.Millisecond
	DefaultLeaderLeaseTimeout = 500 * time.Millisecond
)

// Config says how a replica is built. Zero durations and sizes take the
// defaults noted on each field (Raft's timing: the constants above; the
// rest: hashicorp/raft's raft.DefaultConfig).
type Config struct {
	// Dir is the replica's data folder: dir/raft holds the badger log and
	// stable store and the snapshots, dir/registry the model registry.
	// Required.
	Dir string
	// Host is the replica's libp2p host; Raft RPCs and the replica protocol
	// are registered on it. Required.
	Host *p2p.Host
	// Coordinators are the peer IDs of the initial voters, in federation
	// file order. Empty means the host federation's coordinators.
	Coordinators []peer.ID
	// NoBootstrap keeps a replica with an empty data folder from
	// bootstrapping the cluster; set it on a replica that will be added
	// with Join to a cluster that already runs.
	NoBootstrap bool
	// Logger receives the replica's lines; nil means slog.Default().
	Logger *slog.Logger

	// HeartbeatTimeout (default 500 ms), ElectionTimeout (default 500 ms),
	// LeaderLeaseTimeout (default 500 ms) and CommitTimeout (default 50 ms)
	// are Raft's timing settings.
	HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout, CommitTimeout time.Duration
	// SnapshotThreshold is how many log entries since the last snapshot
	// trigger one (default 8192); SnapshotInterval how often that is
	// checked (default 120 s); TrailingLogs how many entries are kept
	// after a snapshot (default 10240).
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// TransportTimeout bounds one Raft RPC's I/O (default 60 s); it must
	// let the largest model cross the network.
	TransportTimeout time.Duration
	// MaxModelBytes is the size of the largest model the federation
	// trains (4 bytes a parameter). It bounds every incoming Raft RPC:
	// one entry may carry a model and its optimizer state, so an entry is
	// bounded by entryOverhead + 4×MaxModelBytes and an AppendEntries by
	// MaxAppendEntries such entries (security review C1). Zero assumes
	// 16 MiB.
	MaxModelBytes int64
	// NoSync turns off synced writes of the Raft log (tests only: a crash
	// may then lose acknowledged entries).
	NoSync bool
	// RestartDelay is how long the leader waits before running its leader
	// function again after it returned an error (default 1 s).
	RestartDelay time.Duration
}

func (c *Config) validate() error {
	if c.Dir == "" {
		return errors.New("replica config: Dir is required")
	}
	if c.Host == nil {
		return errors.New("replica config: Host is required")
	}
	for name, d := range map[string]time.Duration{"HeartbeatTimeout": c.HeartbeatTimeout, "ElectionTimeout": c.ElectionTimeout,
		"LeaderLeaseTimeout": c.LeaderLeaseTimeout, "CommitTimeout": c.CommitTimeout, "SnapshotInterval": c.SnapshotInterval,
		"TransportTimeout": c.TransportTimeout, "RestartDelay": c.RestartDelay} {
		if d < 0 {
			return fmt.Errorf("replica config: %s %v is negative", name, d)
		}
	}
	return nil
}

// Node is one coordinator replica: a Raft member whose state machine is the
// coordinator FSM, with its model registry. It implements
// coordinator.Replicator, so the round Driver commits through it; run the
// Driver with Lead so that it runs on the leader only.
type Node struct {
	cfg    Config
	id     peer.ID
	logger *slog.Logger

	raft *raft.Raft
	// raftReady is raft once NewRaft returned: the transport's admit rule
	// runs from the moment the transport listens, before that.
	raftReady atomic.Pointer[raft.Raft]
	store     *raftstore.Store
	reg       *coordinator.Registry
	fsm       *FSM
	notify    chan bool

	mu       sync.Mutex
	leader   bool
	leaderCh chan struct{} // closed and replaced at every leadership change
	closed   bool
	done     chan struct{}
	wg       sync.WaitGroup
}

var _ coordinator.Replicator = (*Node)(nil)

// Open opens (or creates) the replica's data folder, starts Raft on the
// host, and bootstraps the cluster when the folder holds no Raft state, this
// replica is one of the coordinators and NoBootstrap is not set: every
// initial replica bootstraps with the same configuration (the coordinators
// in federation order, each with ServerID and ServerAddress its peer ID
// string), so they agree without coordination.
func Open(cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	n := &Node{cfg: cfg, id: cfg.Host.ID(), logger: logger.With("replica", cfg.Host.ID().String()),
		notify: make(chan bool, 16), leaderCh: make(chan struct{}), done: make(chan struct{})}
	coords := slices.Clone(cfg.Coordinators)
	fed := cfg.Host.Federation()
	if len(coords) == 0 && fed != nil {
		for _, m := range fed.Coordinators() {
			coords = append(coords, m.ID)
		}
	}
	// Raft dials replicas by peer ID: give the peerstore their addresses.
	if fed != nil {
		ps := cfg.Host.LibP2P().Peerstore()
		for _, m := range fed.Coordinators() {
			if m.ID != n.id && len(m.Addrs) > 0 {
				ps.AddAddrs(m.ID, m.Addrs, peerstore.PermanentAddrTTL)
			}
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("replica data folder %s: %w", cfg.Dir, err)
	}
	var err error
	logs, stable, snaps, err := raftstore.OpenAll(filepath.Join(cfg.Dir, "raft"), raftstore.Options{NoSync: cfg.NoSync, Logger: logger})
	if err != nil {
		return nil, err
	}
	n.store = logs
	fail := func(err error) (*Node, error) {
		if n.reg != nil {
			n.reg.Close()
		}
		n.store.Close()
		return nil, err
	}
	if n.reg, err = coordinator.OpenRegistry(filepath.Join(cfg.Dir, "registry")); err != nil {
		return fail(err)
	}
	n.fsm = NewFSM(coordinator.NewFSM(), n.reg, n.logger)

	rc := raft.DefaultConfig()
	rc.HeartbeatTimeout = DefaultHeartbeatTimeout
	rc.ElectionTimeout = DefaultElectionTimeout
	rc.LeaderLeaseTimeout = DefaultLeaderLeaseTimeout
	rc.LocalID = raft.ServerID(n.id.String())
	rc.Logger = raftstore.HCLogger(logger, "raft")
	rc.NotifyCh = n.notify
	setDur := func(dst *time.Duration, v time.Duration) {
		if v > 0 {
			*dst = v
		}
	}
	setDur(&rc.HeartbeatTimeout, cfg.HeartbeatTimeout)
	setDur(&rc.ElectionTimeout, cfg.ElectionTimeout)
	setDur(&rc.LeaderLeaseTimeout, cfg.LeaderLeaseTimeout)
	setDur(&rc.CommitTimeout, cfg.CommitTimeout)
	setDur(&rc.SnapshotInterval, cfg.SnapshotInterval)
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	lim := rpcLimits(cfg.MaxModelBytes, rc)
	if err := raft.ValidateConfig(rc); err != nil {
		return fail(fmt.Errorf("replica config: %w", err))
	}
	tt := cfg.TransportTimeout
	if tt == 0 {
		tt = 60 * time.Second
	}
	trans, err := rafttransport.New(cfg.Host.LibP2P(), n.admitRaft, tt, lim, logger)
	if err != nil {
		return fail(err)
	}
	existing, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		trans.(raft.WithClose).Close()
		return fail(fmt.Errorf("replica %s: reading raft state: %w", cfg.Dir, err))
	}
	if n.raft, err = raft.NewRaft(rc, n.fsm, logs, stable, snaps, trans); err != nil {
		trans.(raft.WithClose).Close()
		return fail(fmt.Errorf("replica: starting raft: %w", err))
	}
	n.raftReady.Store(n.raft)
	if !existing && !cfg.NoBootstrap && slices.Contains(coords, n.id) {
		var conf raft.Configuration
		for _, id := range coords {
			conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id.String()), Address: raft.ServerAddress(id.String())})
		}
		if err := n.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			n.raft.Shutdown()
			return fail(fmt.Errorf("replica: bootstrap: %w", err))
		}
		n.logger.Info("replica bootstrapped the cluster", "voters", len(coords))
	}
	if err := n.serve(); err != nil {
		n.raft.Shutdown()
		return fail(err)
	}
	n.wg.Add(1)
	go n.watch()
	return n, nil
}

// entryOverhead bounds the non-model part of one log entry: the command's
// worker lists and SecAgg+ keys and shares grow with the cohort.
const entryOverhead = 8 << 20

// rpcLimits derives the transport's bounds from the model size and sets
// rc.MaxAppendEntries so that a full batch fits them.
func rpcLimits(maxModel int64, rc *raft.Config) rafttransport.Limits {
	if maxModel <= 0 {
		maxModel = 16 << 20
	}
	entry := entryOverhead + 4*maxModel
	const budget = 1 << 30
	batch := int64(rc.MaxAppendEntries)
	if b := budget / entry; b < batch {
		batch = max(b, 1)
	}
	rc.MaxAppendEntries = int(batch)
	return rafttransport.Limits{MaxRPCBytes: batch*entry + (1 << 20)}
}

// admitRaft is the rule for incoming Raft streams and RPCs (security review
// C1): the peer must be enrolled as a coordinator, and be in this
// replica's current Raft configuration. A replica whose configuration is
// still empty (started with NoBootstrap, waiting to be added through the
// admin join path) accepts any enrolled coordinator, since the leader that
// added it must reach it.
func (n *Node) admitRaft(p peer.ID) error {
	if _, err := n.cfg.Host.AdmitStream(rafttransport.ProtocolID, p, p2p.RoleCoordinator); err != nil {
		return err
	}
	r := n.raftReady.Load()
	if r == nil {
		return fmt.Errorf("replica %s is still starting", n.id)
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("reading the Raft configuration: %w", err)
	}
	servers := f.Configuration().Servers
	if len(servers) == 0 {
		return nil
	}
	for _, s := range servers {
		if s.ID == raft.ServerID(p.String()) {
			return nil
		}
	}
	return fmt.Errorf("coordinator %s is not in this replica's Raft configuration", p)
}

// watch follows Raft's leadership notifications.
func (n *Node) watch() {
	defer n.wg.Done()
	for {
		select {
		case <-n.done:
			return
		case l := <-n.notify:
			n.mu.Lock()
			if l != n.leader {
				n.leader = l
				close(n.leaderCh)
				n.leaderCh = make(chan struct{})
			}
			n.mu.Unlock()
			n.logger.Info("replica leadership", "leader", l, "term", n.raft.CurrentTerm())
		}
	}
}

// ID returns the replica's peer ID (its Raft ServerID and address).
func (n *Node) ID() peer.ID { return n.id }

// FSM returns the coordinator state machine this replica applies to.
func (n *Node) FSM() *coordinator.FSM { return n.fsm.Coordinator() }

// Registry returns the replica's model registry: give it to the Driver and
// serve it to workers with p2p.Host.ServeBlobs.
func (n *Node) Registry() *coordinator.Registry { return n.reg }

// Raft returns the underlying Raft node (for tests and diagnostics).
func (n *Node) Raft() *raft.Raft { return n.raft }

// IsLeader implements coordinator.Replicator.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the current leader's peer ID, or "" when none is known.
func (n *Node) Leader() peer.ID {
	_, id := n.raft.LeaderWithID()
	if id == "" {
		return ""
	}
	p, err := peer.Decode(string(id))
	if err != nil {
		return ""
	}
	return p
}

// NotLeaderError is returned by operations that only the leader performs.
type NotLeaderError struct {
	// Leader is the leader's peer ID ("" when none is known), for redirects.
	Leader peer.ID
}

func (e *NotLeaderError) Error() string {
	if e.Leader == "" {
		return "replica: not the leader, no leader known"
	}
	return "replica: not the leader; the leader is " + e.Leader.String()
}

// Unwrap makes errors.Is(err, coordinator.ErrNotLeader) hold.
func (e *NotLeaderError) Unwrap() error { return coordinator.ErrNotLeader }

// raftTimeout turns ctx's deadline into Raft's enqueue timeout (0 = none).
func raftTimeout(ctx context.Context) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	dl, ok := ctx.Deadline()
	if !ok {
		return 0, nil
	}
	d := time.Until(dl)
	if d <= 0 {
		return 0, context.DeadlineExceeded
	}
	return d, nil
}

// wait waits for a Raft future or ctx, whichever ends first.
func wait(ctx context.Context, f raft.Future) error {
	ch := make(chan error, 1)
	go func() { ch <- f.Error() }()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Apply implements coordinator.Replicator: it replicates cmd (with the model
// bytes when it is a ModelCommitted, read from this replica's registry) and
// returns once this replica applied it, with the coordinator FSM's error if
// it refused the command. It fails at once with a *NotLeaderError on a
// follower. When ctx ends first it returns ctx's error; the command may then
// still commit (a later retry of it is refused as stale).
func (n *Node) Apply(ctx context.Context, cmd []byte) error {
	if !n.IsLeader() {
		return &NotLeaderError{Leader: n.Leader()}
	}
	data, err := wrap(cmd, n.reg)
	if err != nil {
		return err
	}
	timeout, err := raftTimeout(ctx)
	if err != nil {
		return err
	}
	f := n.raft.Apply(data, timeout)
	if err := wait(ctx, f); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return fmt.Errorf("replica: command not committed: %w (%w)", err, &NotLeaderError{Leader: n.Leader()})
		}
		if errors.Is(err, raft.ErrEnqueueTimeout) {
			return fmt.Errorf("replica: command not committed before the deadline: %w (%w)", err, context.DeadlineExceeded)
		}
		return fmt.Errorf("replica: command not committed: %w", err)
	}
	if resp, ok := f.Response().(error); ok && resp != nil {
		return resp
	}
	return nil
}

// Barrier waits until every entry committed before the call is applied to
// this replica's FSM (leader only).
func (n *Node) Barrier(ctx context.Context) error {
	timeout, err := raftTimeout(ctx)
	if err != nil {
		return err
	}
	return wait(ctx, n.raft.Barrier(timeout))
}

// Lead runs fn whenever this replica is the leader, until ctx ends: when it
// becomes leader it first waits until every earlier entry is applied (a Raft
// barrier), then calls fn with a context that is cancelled when leadership
// is lost. If fn returns an error while this replica still leads, fn runs
// again after RestartDelay; if it returns nil it runs again only after the
// next leadership change. Lead returns ctx's error, or nil when the node is
// shut down.
//
// Use it for the round driver: fn = Driver.Run. A new leader's driver
// resumes the round in flight from its last committed stage.
func (n *Node) Lead(ctx context.Context, fn func(ctx context.Context) error) error {
	delay := n.cfg.RestartDelay
	if delay == 0 {
		delay = time.Second
	}
	for {
		n.mu.Lock()
		changed := n.leaderCh
		n.mu.Unlock()
		if !n.IsLeader() {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-n.done:
				return nil
			case <-changed:
				continue
			}
		}
		lctx, cancel := context.WithCancel(ctx)
		stop := make(chan struct{})
		go func() {
			// Cancel on a leadership change or shutdown.
			defer cancel()
			select {
			case <-changed:
			case <-stop:
			case <-n.done:
			}
		}()
		err := n.Barrier(lctx)
		if err == nil {
			n.logger.Info("replica leads: running", "term", n.raft.CurrentTerm())
			err = fn(lctx)
		}
		close(stop)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			n.logger.Warn("replica leader function stopped", "err", err)
			if n.IsLeader() {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-n.done:
					return nil
				case <-changed:
				case <-time.After(delay):
				}
			}
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.done:
			return nil
		case <-changed:
		}
	}
}

// Join adds the coordinator with peer ID id, reachable at addrs, as a voter.
// On a follower it forwards the request to the leader. The peer must be a
// coordinator of the host's federation (the connection gater refuses others).
func (n *Node) Join(ctx context.Context, id peer.ID, addrs []string) error {
	if fed := n.cfg.Host.Federation(); fed != nil {
		m, ok := fed.Lookup(id)
		if !ok || m.Role != p2p.RoleCoordinator {
			return fmt.Errorf("replica join: peer %s is not a coordinator of the federation", id)
		}
	}
	if !n.IsLeader() {
		return n.forward(ctx, adminRequest{Op: opJoin, Peer: id.String(), Addrs: addrs})
	}
	return n.join(ctx, id, addrs)
}

func (n *Node) join(ctx context.Context, id peer.ID, addrs []string) error {
	if err := addAddrs(n.cfg.Host, id, addrs); err != nil {
		return fmt.Errorf("replica join %s: %w", id, err)
	}
	timeout, err := raftTimeout(ctx)
	if err != nil {
		return err
	}
	if err := wait(ctx, n.raft.AddVoter(raft.ServerID(id.String()), raft.ServerAddress(id.String()), 0, timeout)); err != nil {
		return fmt.Errorf("replica join %s: %w", id, err)
	}
	n.logger.Info("replica joined", "peer", id.String())
	return nil
}

// Leave removes the replica with peer ID id from the cluster. On a follower
// it forwards the request to the leader.
func (n *Node) Leave(ctx context.Context, id peer.ID) error {
	if !n.IsLeader() {
		return n.forward(ctx, adminRequest{Op: opLeave, Peer: id.String()})
	}
	return n.leave(ctx, id)
}

func (n *Node) leave(ctx context.Context, id peer.ID) error {
	timeout, err := raftTimeout(ctx)
	if err != nil {
		return err
	}
	if err := wait(ctx, n.raft.RemoveServer(raft.ServerID(id.String()), 0, timeout)); err != nil {
		return fmt.Errorf("replica leave %s: %w", id, err)
	}
	n.logger.Info("replica removed", "peer", id.String())
	return nil
}

// Snapshot asks Raft to take a snapshot now.
func (n *Node) Snapshot() error { return n.raft.Snapshot().Error() }

// Shutdown stops Raft (without leaving the cluster), the replica protocol
// and the stores. The host stays open; it belongs to the caller.
func (n *Node) Shutdown() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	n.cfg.Host.RemoveHandler(ProtocolID)
	err := n.raft.Shutdown().Error()
	close(n.done)
	n.wg.Wait()
	if e := n.reg.Close(); err == nil {
		err = e
	}
	if e := n.store.Close(); err == nil {
		err = e
	}
	return err
}
