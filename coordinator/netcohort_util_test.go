package coordinator_test

import (
	"io"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
)

func secaggUnmask(round uint64) secagg.UnmaskRequest {
	return secagg.UnmaskRequest{Round: round, To: 1, Survivors: []uint32{1, 2}}
}

var testLogOut io.Writer = io.Discard
