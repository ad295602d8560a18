package metrics

import (
	"context"
	"errors"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/coordinator"
)

func asRefusal(err error, re **coordinator.RefusalError) bool {
	return err != nil && errors.As(err, re)
}

// Cohort wraps the round driver's cohort: every call goes through
// unchanged, and the refusals workers answer are counted by reason.
func (c *Coordinator) Cohort(inner coordinator.Cohort) coordinator.Cohort {
	return &cohort{inner: inner, c: c}
}

type cohort struct {
	inner coordinator.Cohort
	c     *Coordinator
}

var _ coordinator.Cohort = (*cohort)(nil)

func (w *cohort) Online() []coordinator.WorkerID { return w.inner.Online() }

func (w *cohort) Advertise(ctx context.Context, id coordinator.WorkerID, a *coordinator.Announce) (secagg.AdvertiseKeys, error) {
	v, err := w.inner.Advertise(ctx, id, a)
	w.c.refusal(err)
	return v, err
}

func (w *cohort) ShareKeys(ctx context.Context, id coordinator.WorkerID, kb secagg.KeyBroadcast) ([]secagg.EncryptedShare, error) {
	v, err := w.inner.ShareKeys(ctx, id, kb)
	w.c.refusal(err)
	return v, err
}

func (w *cohort) MaskedInput(ctx context.Context, id coordinator.WorkerID, sb secagg.ShareBundle, dim int) (secagg.MaskedInput, error) {
	v, err := w.inner.MaskedInput(ctx, id, sb, dim)
	w.c.refusal(err)
	return v, err
}

func (w *cohort) ConsistencyCheck(ctx context.Context, id coordinator.WorkerID, req secagg.ConsistencyRequest) (secagg.ConsistencyResponse, error) {
	v, err := w.inner.ConsistencyCheck(ctx, id, req)
	w.c.refusal(err)
	return v, err
}

func (w *cohort) Unmask(ctx context.Context, id coordinator.WorkerID, req secagg.UnmaskRequest) (secagg.UnmaskResponse, error) {
	v, err := w.inner.Unmask(ctx, id, req)
	w.c.refusal(err)
	return v, err
}

func (w *cohort) Evaluate(ctx context.Context, id coordinator.WorkerID, round uint64, h [32]byte) (coordinator.Metrics, error) {
	v, err := w.inner.Evaluate(ctx, id, round, h)
	w.c.refusal(err)
	return v, err
}
