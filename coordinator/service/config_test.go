package service

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/coordinator/replica"
)

// baseCoordinatorTOML is a valid coordinator configuration without a
// [raft] table; tests append one.
const baseCoordinatorTOML = `name = "coord-1"
identity = "coord-1.key"
federation = "federation.toml"
listen = ["/ip4/127.0.0.1/tcp/4001"]
data = "data"

[rounds]
model = "logreg"
input = [1, 1, 64]
classes = 10
rounds = 2
workers_per_round = 3
min_workers = 3
`

func parseTestConfig(t *testing.T, raft string) (*Config, error) {
	t.Helper()
	return Parse("coord.toml", []byte(baseCoordinatorTOML+raft), "/etc/sovereign")
}

func TestCoordinatorConfigRaftDefaults(t *testing.T) {
	for _, raft := range []string{"", "\n[raft]\n"} {
		c, err := parseTestConfig(t, raft)
		if err != nil {
			t.Fatalf("%q: %v", raft, err)
		}
		// Every zero field takes hashicorp/raft's default in replica.Open.
		if !reflect.DeepEqual(c.Replica, replica.Config{}) {
			t.Errorf("%q: replica settings %+v, want all zero (hashicorp/raft defaults)", raft, c.Replica)
		}
		if c.Data != filepath.Join("/etc/sovereign", "data") || c.Identity != filepath.Join("/etc/sovereign", "coord-1.key") {
			t.Errorf("paths not resolved against the file's folder: data %q, identity %q", c.Data, c.Identity)
		}
	}
}

func TestCoordinatorConfigRaftTable(t *testing.T) {
	c, err := parseTestConfig(t, `
[raft]
heartbeat_timeout = "700ms"
election_timeout = "1.5s"
leader_lease_timeout = "300ms"
commit_timeout = "20ms"
snapshot_threshold = 4096
snapshot_interval = "3m"
trailing_logs = 512
transport_timeout = "45s"
restart_delay = "250ms"
`)
	if err != nil {
		t.Fatal(err)
	}
	want := replica.Config{
		HeartbeatTimeout: 700 * time.Millisecond, ElectionTimeout: 1500 * time.Millisecond,
		LeaderLeaseTimeout: 300 * time.Millisecond, CommitTimeout: 20 * time.Millisecond,
		SnapshotThreshold: 4096, SnapshotInterval: 3 * time.Minute, TrailingLogs: 512,
		TransportTimeout: 45 * time.Second, RestartDelay: 250 * time.Millisecond,
	}
	if !reflect.DeepEqual(c.Replica, want) {
		t.Errorf("replica settings\n got %+v\nwant %+v", c.Replica, want)
	}
	// Keys left out keep their defaults while the others are set.
	c, err = parseTestConfig(t, "\n[raft]\nelection_timeout = \"2s\"\ntrailing_logs = 10\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := (replica.Config{ElectionTimeout: 2 * time.Second, TrailingLogs: 10}); !reflect.DeepEqual(c.Replica, want) {
		t.Errorf("partial table: got %+v, want %+v", c.Replica, want)
	}
}

func TestCoordinatorConfigRaftErrors(t *testing.T) {
	type tc struct {
		name, raft string
		want       []string // every one must appear in the error
	}
	var cases []tc
	for _, key := range []string{"heartbeat_timeout", "election_timeout", "leader_lease_timeout", "commit_timeout",
		"snapshot_interval", "transport_timeout", "restart_delay"} {
		for _, bad := range []string{"fast", "0s", "-1s", "10"} {
			cases = append(cases, tc{key + "=" + bad, fmt.Sprintf("%s = %q\n", key, bad), []string{"raft." + key, fmt.Sprintf("%q", bad)}})
		}
	}
	for _, key := range []string{"snapshot_threshold", "trailing_logs"} {
		for _, bad := range []int{0, -5} {
			cases = append(cases, tc{fmt.Sprintf("%s=%d", key, bad), fmt.Sprintf("%s = %d\n", key, bad), []string{"raft." + key, fmt.Sprint(bad)}})
		}
	}
	cases = append(cases,
		// hashicorp/raft refuses a lease longer than the heartbeat timeout;
		// the defaults are 500 ms and 1 s.
		tc{"lease over heartbeat", "heartbeat_timeout = \"500ms\"\nleader_lease_timeout = \"600ms\"\n", []string{"raft.leader_lease_timeout", "600ms", "500ms"}},
		tc{"lease over default heartbeat", "leader_lease_timeout = \"2s\"\n", []string{"raft.leader_lease_timeout", "2s", "500ms"}},
		tc{"heartbeat under default lease", "heartbeat_timeout = \"200ms\"\n", []string{"raft.leader_lease_timeout", "500ms", "200ms"}},
		// Wrong TOML types and unknown keys are decoding errors that name
		// the key and show its line.
		tc{"duration as a number", "heartbeat_timeout = 5\n", []string{"coord.toml", "heartbeat_timeout"}},
		tc{"count as a string", "trailing_logs = \"many\"\n", []string{"coord.toml", "trailing_logs"}},
		tc{"unknown key", "heartbeat = \"1s\"\n", []string{"coord.toml:16:", "[raft]", `unknown key "raft.heartbeat"`, `did you mean "raft.heartbeat_timeout"?`}},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseTestConfig(t, "\n[raft]\n"+c.raft)
			if err == nil {
				t.Fatalf("[raft] %q accepted", c.raft)
			}
			for _, w := range append([]string{"coord.toml"}, c.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("[raft] %q: error %q does not name %q", c.raft, err, w)
				}
			}
		})
	}
	// A lease within a longer heartbeat is fine.
	if _, err := parseTestConfig(t, "\n[raft]\nheartbeat_timeout = \"3s\"\nleader_lease_timeout = \"2s\"\n"); err != nil {
		t.Errorf("lease 2s with heartbeat 3s: %v", err)
	}
}

func TestCoordinatorConfigMonitoringKeys(t *testing.T) {
	top := func(lines string) (*Config, error) {
		return Parse("coord.toml", []byte(lines+"\n"+baseCoordinatorTOML), "/etc/sovereign")
	}
	c, err := top(`metrics_listen = "127.0.0.1:9464"
dashboard_listen = "127.0.0.1:8080"
dashboard_token = "t0ken"
log_format = "json"`)
	if err != nil {
		t.Fatal(err)
	}
	if c.MetricsListen != "127.0.0.1:9464" || c.DashboardListen != "127.0.0.1:8080" || c.DashboardToken != "t0ken" || c.LogFormat != "json" {
		t.Fatalf("parsed %+v", c.File)
	}
	if c, err := top(""); err != nil || c.MetricsListen != "" || c.DashboardListen != "" {
		t.Fatalf("monitoring must be off by default: %+v, %v", c, err)
	}
	for _, bad := range []struct{ lines, want string }{
		{`metrics_listen = "9464"`, "coord.toml: metrics_listen"},
		{`dashboard_listen = "example.org:80"`, "coord.toml: dashboard_listen"},
		{`dashboard_token = "x"`, "coord.toml: dashboard_token: set without dashboard_listen"},
		{`log_format = "xml"`, "coord.toml: log_format"},
	} {
		if _, err := top(bad.lines); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: error %v, want one naming %q", bad.lines, err, bad.want)
		}
	}

}
