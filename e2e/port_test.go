package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestSecondCoordinatorOnSamePort: a coordinator started on a port another
// coordinator listens on exits with an error saying so, and the first keeps
// running.
func TestSecondCoordinatorOnSamePort(t *testing.T) {
	f := newFed(t, fedOptions{workers: 0, rounds: 1})
	f.startCoordinator()
	waitLog(t, f.coord, 30*time.Second, 20*time.Millisecond, "msg=listening")
	_, err := run(t, "coordinator", "--config", f.coordCfg)
	if err == nil {
		t.Fatal("a second coordinator on the same port started")
	}
	if !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "give each its own port") {
		t.Fatalf("second coordinator: %v", err)
	}
	if f.coord.exited() {
		t.Fatal("the first coordinator exited")
	}
	if _, err := f.status(); err != nil {
		t.Fatalf("the first coordinator no longer answers: %v", err)
	}
}
