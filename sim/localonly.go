package sim

import (
	"context"
	"fmt"

	"github.com/sovereign-fl/sovereign/data"
)

// LocalOnly is the baseline a federation must beat: each of cfg's clients
// (partitioned exactly as Run partitions them) trains alone for the same
// rounds, epochs and batch, from the same initial model, and is evaluated
// on the same held-out test set. With a schema each site imputes and
// standardises with its own statistics (there is no federation to ask).
// It returns one Result per client, in client order.
func LocalOnly(ctx context.Context, cfg Config) ([]*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var train, test *data.Dataset
	var s *data.Schema
	var err error
	if cfg.Schema != "" {
		if s, err = data.LoadSchema(cfg.Schema); err != nil {
			return nil, fmt.Errorf("--schema: %w", err)
		}
		path, testFrac, splitSeed, err := data.ParseSchemaCSV(cfg.Dataset)
		if err != nil {
			return nil, fmt.Errorf("--dataset %q: %w", cfg.Dataset, err)
		}
		if train, test, err = data.LoadSchemaTables(path, s, testFrac, splitSeed); err != nil {
			return nil, err
		}
	} else if train, test, err = data.Load(cfg.Dataset); err != nil {
		return nil, fmt.Errorf("--dataset %q: %w", cfg.Dataset, err)
	}
	shadow := *train
	if s != nil {
		// Raw tables hold NaN for missing cells; Partition reads labels only.
		shadow.X = make([]float32, len(train.X))
	}
	clients, err := data.Partition(&shadow, cfg.Clients, cfg.Partition, cfg.TestFraction, seedFor(cfg.Seed, seedPartition))
	if err != nil {
		return nil, fmt.Errorf("--partition: %w", err)
	}
	var out []*Result
	for _, c := range clients {
		idx := append(append([]int(nil), c.Train...), c.Test...)
		mine, err := train.Subset(fmt.Sprintf("%s-client%d", train.Name, c.ID), idx)
		if err != nil {
			return nil, err
		}
		ctest := test
		if s != nil {
			sums, err := data.Sums(s, mine, nil)
			if err != nil {
				return nil, err
			}
			st, err := data.StatsFromSums(s, sums)
			if err != nil {
				return nil, fmt.Errorf("client %d: %w", c.ID, err)
			}
			if mine, err = data.Encode(s, mine, st, s.Standardizes()); err != nil {
				return nil, err
			}
			if ctest, err = data.Encode(s, test, st, s.Standardizes()); err != nil {
				return nil, err
			}
		}
		one := cfg
		one.Clients, one.Fraction, one.Partition, one.Schema = 1, 1, "iid", ""
		one.Dropout, one.Attackers, one.Secure = 0, "", false
		res, err := RunOn(ctx, one, mine, ctest, nil)
		if err != nil {
			return nil, fmt.Errorf("client %d alone: %w", c.ID, err)
		}
		out = append(out, res)
	}
	return out, nil
}
