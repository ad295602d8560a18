// Package aggregation combines client model updates into one server step.
//
// It works on flat parameter vectors: every update is a client's delta
// (local model minus global model) as a []float32, with a weight such as
// the client's example count. The package imports nothing else of the
// project, so the coordinator, the simulator and tests all share the same
// arithmetic.
//
// A round has three stages, all available separately:
//
//   - Validate refuses malformed updates (wrong length, NaN or Inf,
//     non-positive weight, duplicate or unnamed client) and names the
//     client and the reason.
//   - A Rule combines the valid deltas into one delta: WeightedMean
//     (FedAvg), Median, TrimmedMean, Krum, MultiKrum and Bulyan.
//   - A ServerOptimizer applies the combined delta to the global model:
//     FedAvg, FedAvgM, FedAdagrad, FedAdam and FedYogi.
//
// Strategy bundles a rule, a server optimizer and client-side options, and
// ParseStrategy builds one from a command-line string such as "fedadam",
// "trimmed:0.1" or "bulyan:2".
//
// All rules are deterministic: the same inputs in the same order give the
// same bits, whatever the number of goroutines used, so replicas that
// aggregate the same updates agree on the resulting model.
package aggregation
