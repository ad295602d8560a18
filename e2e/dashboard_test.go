package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// chromium returns Debian's chromium binary or skips the test.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	missingTool(t, "chromium not installed: the dashboard test needs Debian's chromium package (apt-get install chromium; .ci/run installs it)")
	return "" // not reached: missingTool ends the test
}

// browser runs headless Chromium on loopback pages only.
type browser struct {
	t   *testing.T
	bin string
	dir string
	n   int
}

func (b *browser) run(args ...string) (string, error) {
	b.n++
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-default-apps",
		"--user-data-dir=" + filepath.Join(b.dir, fmt.Sprintf("profile-%d", b.n))}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.bin, append(base, args...)...)
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("chromium %v: %v: %s", args, err, errb.String())
	}
	return string(out), nil
}

// dumpDOM returns the DOM Chromium rendered for url.
func (b *browser) dumpDOM(url string) (string, error) { return b.run("--dump-dom", url) }

// screenshot writes a PNG of url to path.
func (b *browser) screenshot(url, path string) error {
	_, err := b.run("--screenshot="+path, "--window-size=1280,1500", "--hide-scrollbars", url)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		return fmt.Errorf("chromium wrote no screenshot at %s (%v)", path, err)
	}
	return nil
}

// renderedPage is what the test reads off the rendered dashboard.
type renderedPage struct {
	federation, self, leader string
	leaders, replicas        int
	online                   int
	committed                int
	curve                    bool
	ledgerRows               int
}

var (
	reLeader    = regexp.MustCompile(`<b id="leader">([^<]*)</b>`)
	reSelf      = regexp.MustCompile(`<b id="self">([^<]*)</b>`)
	reFed       = regexp.MustCompile(`<h1 id="federation">([^<]*)</h1>`)
	reCommitted = regexp.MustCompile(`<b id="committed">(\d+)</b>`)
)

func parsePage(dom string) renderedPage {
	var p renderedPage
	if m := reLeader.FindStringSubmatch(dom); m != nil {
		p.leader = m[1]
	}
	if m := reSelf.FindStringSubmatch(dom); m != nil {
		p.self = m[1]
	}
	if m := reFed.FindStringSubmatch(dom); m != nil {
		p.federation = m[1]
	}
	if m := reCommitted.FindStringSubmatch(dom); m != nil {
		p.committed, _ = strconv.Atoi(m[1])
	}
	p.replicas = strings.Count(dom, `class="replica"`)
	p.leaders = strings.Count(dom, `class="replica" data-state="Leader"`)
	p.online = strings.Count(dom, `class="member" data-online="true"`)
	p.curve = strings.Contains(dom, `id="accuracy-curve"`) && strings.Contains(dom, `class="series"`) && strings.Contains(dom, `id="loss-curve"`)
	p.ledgerRows = strings.Count(dom, `class="entry"`)
	return p
}

// waitPage polls the rendered page of url until cond holds.
func (b *browser) waitPage(what, url string, d time.Duration, cond func(renderedPage) bool) (renderedPage, string) {
	b.t.Helper()
	deadline := time.Now().Add(d)
	var last renderedPage
	var lastErr error
	for time.Now().Before(deadline) {
		dom, err := b.dumpDOM(url)
		if err == nil {
			last = parsePage(dom)
			if cond(last) {
				return last, dom
			}
		}
		lastErr = err
		time.Sleep(200 * time.Millisecond)
	}
	b.t.Fatalf("timed out waiting for the dashboard at %s to show %s; last page %+v, last error %v", url, what, last, lastErr)
	return last, ""
}

// TestDashboardInChromium starts three coordinators and three workers with
// dashboard_listen and a bearer token, opens every replica's page in
// headless Chromium and checks the rendered page: three replicas with one
// leader, the three members online, the round counter advancing, the
// curve drawn. It then SIGKILLs the leader and waits for a survivor's page
// to name a new leader, and for the metrics to agree (the new leader's
// raft_state, the survivors' leader changes, every worker's redials of
// the dead coordinator). SOVEREIGN_DASHBOARD_SCREENSHOT=path keeps a
// screenshot (docs/dashboard.png is one).
func TestDashboardInChromium(t *testing.T) {
	b := &browser{t: t, bin: chromium(t), dir: t.TempDir()}
	c := newCluster(t, clusterOptions{coords: 3, workers: 3, rounds: 100000, noDP: true})
	const token = "e2e-dashboard-token"
	urls := make([]string, len(c.ccfg))
	cmetrics := make([]string, len(c.ccfg))
	for i, p := range c.ccfg {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		urls[i] = "http://" + addr + "/?token=" + token
		cmetrics[i] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		prepend(t, p, fmt.Sprintf("dashboard_listen = %q\ndashboard_token = %q\nmetrics_listen = %q", addr, token, cmetrics[i]))
	}
	wmetrics := make([]string, len(c.wcfg))
	for i, p := range c.wcfg {
		wmetrics[i] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		prepend(t, p, fmt.Sprintf("metrics_listen = %q", wmetrics[i]))
	}
	for i := range c.cnames {
		c.startCoordinator(i)
	}
	for i := range c.wnames {
		c.startWorker(i)
	}

	// Every replica's page, the followers' too, shows the whole federation.
	var first renderedPage
	for i, u := range urls {
		p, _ := b.waitPage("3 replicas, 1 leader, 3 members online, a curve", u, 90*time.Second, func(p renderedPage) bool {
			return p.replicas == 3 && p.leaders == 1 && p.online == 3 && p.curve && p.committed >= 2 && p.leader != ""
		})
		if p.federation != "e2e-ha" || p.self != c.cnames[i] {
			t.Fatalf("page of %s names federation %q and replica %q", c.cnames[i], p.federation, p.self)
		}
		if p.ledgerRows < min(p.committed, 20) {
			t.Fatalf("page of %s: %d ledger rows for %d committed rounds", c.cnames[i], p.ledgerRows, p.committed)
		}
		if i == 0 {
			first = p
		}
	}
	// The round counter advances.
	b.waitPage("the committed rounds advancing", urls[0], 60*time.Second, func(p renderedPage) bool { return p.committed > first.committed })

	// The token guards the page; the page is read-only.
	plain := strings.TrimSuffix(urls[0], "?token="+token)
	if resp, err := http.Get(plain); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET without token: %v %v, want 401", resp, err)
	}
	if resp, err := http.Post(urls[0], "text/plain", strings.NewReader("x")); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %v %v, want 405", resp, err)
	}
	// A follower's page serves round 1's committed model as safetensors,
	// and the ledger knows its hash.
	follower := (slices.Index(c.cnames, first.leader) + 1) % len(c.cnames)
	modelURL := strings.Replace(urls[follower], "/?token=", "/model/1.safetensors?token=", 1)
	resp, err := http.Get(modelURL)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %v %v", modelURL, resp, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	mf := filepath.Join(c.dir, "dashboard-round-1.safetensors")
	if err := os.WriteFile(mf, body, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "ledger", "verify", "--data", c.cdirs[follower], "--model", mf); err != nil || !strings.Contains(out, "OK model") {
		t.Fatalf("model downloaded from %s's dashboard: ledger verify: %v\n%s", c.cnames[follower], err, out)
	}
	if dst := os.Getenv("SOVEREIGN_DASHBOARD_SCREENSHOT"); dst != "" {
		if err := b.screenshot(urls[0], dst); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot written to %s", dst)
	}

	// Kill the leader: a survivor's page names the new leader.
	old := slices.Index(c.cnames, first.leader)
	if old < 0 {
		t.Fatalf("the page names leader %q, not a coordinator of %v", first.leader, c.cnames)
	}
	survivorChanges := map[int]float64{}
	for _, i := range c.others(old) {
		m, err := scrape(cmetrics[i])
		if err != nil {
			t.Fatal(err)
		}
		survivorChanges[i] = mustValue(t, c.cnames[i], m, "sovereign_raft_leader_changes_total")
	}
	killed := time.Now()
	c.coords[old].kill()
	survivor := c.others(old)[0]
	p, _ := b.waitPage("a new leader", urls[survivor], 60*time.Second, func(p renderedPage) bool {
		return p.leader != "" && p.leader != first.leader && p.leaders == 1 && p.replicas == 3
	})
	t.Logf("leader %s killed; the page of %s named %s after %v", first.leader, c.cnames[survivor], p.leader, time.Since(killed).Round(100*time.Millisecond))
	if !slices.Contains(c.cnames, p.leader) {
		t.Fatalf("new leader %q is not a coordinator", p.leader)
	}
	// The metrics agree: the new leader reports Leader, the survivors
	// counted a leader change, and every worker redials the dead one.
	waitMetric(t, "the new leader's raft_state{Leader} = 1", cmetrics[slices.Index(c.cnames, p.leader)], func(m metricFamilies) bool {
		v, _ := metricValue(m, "sovereign_raft_state", "state", "Leader")
		return v == 1
	})
	for i, before := range survivorChanges {
		waitMetric(t, c.cnames[i]+" counting a leader change", cmetrics[i], func(m metricFamilies) bool {
			v, _ := metricValue(m, "sovereign_raft_leader_changes_total")
			return v > before
		})
	}
	for i, a := range wmetrics {
		waitMetric(t, c.wnames[i]+" redialling "+first.leader, a, func(m metricFamilies) bool {
			v, _ := metricValue(m, "sovereign_worker_redials_total", "coordinator", first.leader)
			return v >= 1
		})
	}
	// And the federation goes on under the new leader.
	before := p.committed
	b.waitPage("rounds committed under the new leader", urls[survivor], 60*time.Second, func(p renderedPage) bool { return p.committed > before })
}

type metricFamilies = map[string]*dto.MetricFamily

// waitMetric polls addr's /metrics until cond holds.
func waitMetric(t *testing.T, what, addr string, cond func(metricFamilies) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m, err := scrape(addr); err == nil && cond(m) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s at %s", what, addr)
}
