package worker

import "time"

// Observer receives the events of a worker that monitoring counts (the
// metrics package's Worker implements it). Calls happen on the node's and
// the server's goroutines, some under the node's lock: an Observer must not
// block and must not call back into the Node.
type Observer interface {
	// RoundJoined is called once per round the node accepted (stage 0
	// answered for the first time).
	RoundJoined(round uint64)
	// RoundRefused is called for every refusal the node gives, with its
	// reason as in Refusal.Reason.
	RoundRefused(round uint64, reason string)
	// Trained is called after each local training with its duration.
	Trained(round uint64, d time.Duration)
	// Redialed is called each time the server dials a coordinator again
	// after the connection dropped or a dial failed.
	Redialed(coordinator string)
}

type nopObserver struct{}

func (nopObserver) RoundJoined(uint64)            {}
func (nopObserver) RoundRefused(uint64, string)   {}
func (nopObserver) Trained(uint64, time.Duration) {}
func (nopObserver) Redialed(string)               {}

// WithObserver sets the node's Observer (default: none).
func WithObserver(o Observer) Option {
	return func(n *Node) error {
		if o != nil {
			n.obs = o
		}
		return nil
	}
}
