package sim

import (
	"context"
	"fmt"
	"sync"

	"github.com/sovereign-fl/sovereign/model"
	"github.com/sovereign-fl/sovereign/trainer"
)

// startTrainers starts n processes of the --trainer command
// (docs/trainer-protocol.md) and checks each hello: the layout must be the
// model's, and the trainer must hold as many training examples as the
// --dataset the clients' index lists are drawn from (it must load the same
// data, in the same order).
func (f *federation) startTrainers(n int) error {
	cmd, err := trainer.SplitCommand(f.cfg.Trainer)
	if err != nil {
		return fmt.Errorf("--trainer: %w", err)
	}
	f.trainers = make(chan *trainer.Process, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		p, err := trainer.New(trainer.Config{Command: cmd})
		if err != nil {
			return fmt.Errorf("--trainer: %w", err)
		}
		f.procs = append(f.procs, p)
		wg.Go(func() {
			h, err := p.Hello(context.Background())
			if err == nil {
				err = trainer.CheckLayout(f.spec, h.Tensors)
			}
			if err == nil && h.Examples != f.train.N {
				err = fmt.Errorf("trainer %q has %d training examples but --dataset %s has %d: the trainer must load the same training set, in the same order, for the clients' indices to mean the same examples",
					p.Name(), h.Examples, f.cfg.Dataset, f.train.N)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("--trainer: %w", err)
		}
	}
	for _, p := range f.procs {
		f.trainers <- p
	}
	return nil
}

// close stops the trainer processes.
func (f *federation) close() {
	for _, p := range f.procs {
		p.Close()
	}
}

// trainExternal is trainClient through a pooled trainer process, told the
// client's index list: the same ClientUpdate request a worker sends, with
// the same seed the built-in training would use. Δ = local − global is
// computed here, as a worker does.
func (f *federation) trainExternal(r, id int, global []float32) clientOut {
	c := f.clients[id]
	ts, err := model.ParamsToTensors(f.spec, global)
	if err != nil {
		return clientOut{id: id, err: err}
	}
	p := <-f.trainers
	res, err := p.Train(context.Background(), ts, trainer.TrainRequest{
		Round: uint64(r), Epochs: f.cfg.Epochs, Batch: f.cfg.Batch, LR: f.cfg.LR, ProxMu: float64(f.strategy.ProxMu),
		Seed: seedFor(f.cfg.Seed, seedTrain, uint64(r), uint64(id)), Indices: c.Train,
	})
	f.trainers <- p
	if err != nil {
		return clientOut{id: id, err: err}
	}
	local, err := model.TensorsToParams(f.spec, res.Tensors)
	if err != nil {
		return clientOut{id: id, err: fmt.Errorf("trainer %q: %w", p.Name(), err)}
	}
	delta := make([]float32, len(local))
	model.Delta(delta, local, global)
	return clientOut{id: id, delta: delta, weight: float64(len(c.Train)), loss: res.Loss}
}
