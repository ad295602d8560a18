package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sovereign-fl/sovereign/model"
	"github.com/sovereign-fl/sovereign/trainer"
)

// WithTrainer makes the node train and evaluate through p, the
// institution's own training code (docs/trainer-protocol.md), instead of
// the built-in networks. Without it NewNode starts the configuration's
// trainer command, if any. The node closes p.
func WithTrainer(p *trainer.Process) Option {
	return func(n *Node) error {
		if p == nil {
			return errors.New("worker: WithTrainer: nil trainer")
		}
		n.ext = p
		return nil
	}
}

// startTrainer creates the configured trainer (unless WithTrainer gave
// one), starts it and reads its hello: the layout every announced model is
// checked against, and the example count (the FedAvg weight).
func (n *Node) startTrainer() error {
	if n.ext == nil {
		p, err := trainer.New(trainer.Config{
			Command: n.cfg.Trainer, WorkDir: n.cfg.TrainerDir, Timeout: n.cfg.TrainerTimeout,
			Logger: n.log,
		})
		if err != nil {
			return n.cfg.fieldError("trainer", "%v", err)
		}
		n.ext = p
	}
	h, err := n.ext.Hello(context.Background())
	if err != nil {
		n.ext.Close()
		return fmt.Errorf("worker %s: %w", n.cfg.Name, err)
	}
	if h.Examples == 0 {
		n.ext.Close()
		return fmt.Errorf("worker %s: trainer %q: hello: examples: 0, the trainer has no training examples", n.cfg.Name, n.ext.Name())
	}
	n.extHello = h
	return nil
}

// Close stops the node's trainer, if it has one.
func (n *Node) Close() error {
	if n.ext != nil {
		return n.ext.Close()
	}
	return nil
}

// trainExternal sends the global model to the trainer and returns its local
// model as a flat vector of sp. A failing trainer (crash, timeout, garbage,
// NaN, wrong tensors, bad counts) becomes a Refusal of the round whose
// reason names the trainer and the field; the trainer is restarted in the
// background for the next round.
func (n *Node) trainExternal(a *Announce, sp model.Spec, global []float32) ([]float32, float64, error) {
	ts, err := model.ParamsToTensors(sp, global)
	if err != nil {
		return nil, 0, fmt.Errorf("worker %s: round %d: %w", n.cfg.Name, a.Round, err)
	}
	n.trainCalls.Add(1)
	start := time.Now()
	res, err := n.ext.Train(context.Background(), ts, trainer.TrainRequest{
		Round: a.Round, Epochs: a.Train.Epochs, Batch: a.Train.Batch, LR: a.Train.LR, ProxMu: a.Train.ProxMu,
		Seed: trainSeed(a, n.id),
	})
	if err != nil {
		return nil, 0, n.trainerFailed(a.Round, err)
	}
	local, err := model.TensorsToParams(sp, res.Tensors)
	if err != nil {
		return nil, 0, n.refuseDetail(a.Round, err, fmt.Sprintf("trainer %q: train: model: %v", n.ext.Name(), err), "")
	}
	n.obs.Trained(a.Round, time.Since(start))
	n.log.Info("trainer trained", "round", a.Round, "examples", res.Examples, "train_loss", res.Loss)
	return local, res.Loss, nil
}

// evaluateExternal evaluates params (a model of sp) with the trainer on its
// local test examples.
func (n *Node) evaluateExternal(sp model.Spec, params []float32) (int, float64, float64, error) {
	ts, err := model.ParamsToTensors(sp, params)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("worker %s: evaluate: %w", n.cfg.Name, err)
	}
	r, err := n.ext.Evaluate(context.Background(), ts, nil)
	if err != nil {
		n.warmTrainer()
		return 0, 0, 0, fmt.Errorf("worker %s: evaluate: %w", n.cfg.Name, err)
	}
	return r.Examples, r.Loss, r.Accuracy, nil
}

// trainerFailed turns a trainer failure into a refusal of the round: the
// reason (sent to the coordinator) is the *trainer.Error's text, which
// names the trainer, the request and the field but carries none of the
// trainer's output; the trainer's own message stays in the log.
func (n *Node) trainerFailed(round uint64, err error) error {
	n.warmTrainer()
	var te *trainer.Error
	if errors.As(err, &te) {
		return n.refuseDetail(round, err, te.Error(), te.Detail)
	}
	return n.refuseDetail(round, err, fmt.Sprintf("trainer %q failed", n.ext.Name()), err.Error())
}

// warmTrainer restarts a failed trainer in the background, so that it is
// ready (its start-up, e.g. importing PyTorch, done) for the next round.
func (n *Node) warmTrainer() {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if _, err := n.ext.Hello(ctx); err != nil {
			n.log.Warn("trainer restart failed; the next round tries again", "err", err)
		}
	}()
}

// newTrainerNode is NewNode for a configuration with a trainer: no local
// datasets, the trainer started and its hello read before the policy's
// accepted models are checked against its layout.
func newTrainerNode(cfg *Config, st *Store, logger *slog.Logger, opts []Option) (*Node, error) {
	return newNode(cfg, st, nil, nil, logger, opts, (*Node).startTrainer)
}
