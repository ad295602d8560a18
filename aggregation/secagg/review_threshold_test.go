package secagg

import (
	"strings"
	"testing"
)

// The security review's low-threshold attack (H2) begins with a
// configuration announcing t = k/2 for k = 10: a coordinator that tells two
// halves of the victim's holders different survivor sets then rebuilds
// both its secrets without any colluder. Such a configuration no longer
// validates, so no client or server is built for it.
func TestAttackReviewLowAnnouncedThresholdInvalid(t *testing.T) {
	cfg := testConfig(20, 64)
	cfg.Degree = DefaultDegree(20)
	cfg.Threshold = cfg.Degree / 2
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "strict majority") {
		t.Fatalf("t = %d for k = %d: Validate = %v, want an error naming the strict majority", cfg.Threshold, cfg.Degree, err)
	}
	if _, err := NewServer(cfg); err == nil {
		t.Fatal("a server was built for the review's low threshold")
	}
	cfg.Threshold = SafeThreshold(cfg.Degree, 0)
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the strict majority t = %d: %v", cfg.Threshold, err)
	}
}
