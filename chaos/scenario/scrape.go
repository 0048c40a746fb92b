package scenario

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/harbormaster/harbormaster/internal/promtext"
	"github.com/harbormaster/harbormaster/internal/tlsid"
)

// Scrape reads node's /metrics (metrics_addr, every lab node's port 7301)
// from the client namespace, as Prometheus would: over mutual TLS with the
// lab's read operator certificate (plain HTTP with --insecure).
func (c *Cluster) Scrape(ctx context.Context, node string) (string, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return c.dial(ctx, addr) }}
	scheme := "http"
	if !c.opts.Insecure {
		st, err := tlsid.Load(tlsid.FilesIn(c.TLSDir(), string(tlsid.RoleRead)), nil)
		if err != nil {
			return "", fmt.Errorf("scrape %s: %w", node, err)
		}
		tr.TLSClientConfig, scheme = st.ClientConfig(tlsid.AnyNode), "https"
	}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+metricsAddr(c.Node(node))+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := cl.Do(req)
	if err != nil {
		return "", fmt.Errorf("scrape %s: %w", node, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("scrape %s: status %d, %v", node, resp.StatusCode, err)
	}
	return string(body), nil
}

// checkFailoverMetrics scrapes the new holder of the VIP role after a
// failover caused by the end of the old holder's lease: it must count the
// failover (harbormaster_failovers_total, cause lease) and its phases. With
// a work dir the scrape is kept as metrics-trialN-NODE.txt.
func checkFailoverMetrics(ctx context.Context, c *Cluster, tr *Trial, node string) {
	body, err := c.Scrape(ctx, node)
	if err != nil {
		tr.violate("metrics: %v", err)
		return
	}
	if !c.tmpDir {
		_ = os.WriteFile(filepath.Join(c.dir, fmt.Sprintf("metrics-trial%d-%s.txt", tr.N, node)), []byte(body), 0o644)
	}
	fams, err := promtext.Parse(body)
	if err != nil {
		tr.violate("metrics of %s: %v", node, err)
		return
	}
	if n := fams.Value("harbormaster_failovers_total", map[string]string{"role": VIPRole, "type": "vip", "cause": "lease"}); n < 1 {
		tr.violate("metrics of %s: harbormaster_failovers_total{role=%q,cause=\"lease\"} = %v after it took the role from a crashed holder, want >= 1", node, VIPRole, n)
	} else {
		tr.note("metrics of %s: harbormaster_failovers_total{role=%q,cause=\"lease\"} %v", node, VIPRole, n)
	}
	if n := fams.Value("harbormaster_failover_duration_seconds", map[string]string{"role": VIPRole, "phase": "acted"}); n < 1 {
		tr.violate("metrics of %s: no harbormaster_failover_duration_seconds{phase=\"acted\"} sample for %s", node, VIPRole)
	}
}
