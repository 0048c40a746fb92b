package checks

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/harbormaster/harbormaster/internal/conf"
)

// maxBody is how much of a response body an http check reads.
const maxBody = 1 << 20

// httpProber is an http or https check: one request on a fresh connection,
// redirects not followed.
type httpProber struct {
	url, method string
	status      statusRange
	contains    []byte
	caFile      string
	timeout     time.Duration
}

func newHTTPProber(c Config) (*httpProber, error) {
	st, err := parseStatus(c.Status)
	if err != nil {
		return nil, &conf.FieldError{Field: "status", Msg: err.Error()}
	}
	return &httpProber{
		url: c.URL, method: c.Method, status: st, contains: []byte(c.BodyContains),
		caFile: c.CAFile, timeout: time.Duration(c.Timeout),
	}, nil
}

func (p *httpProber) probe(ctx context.Context) (string, error) {
	start := time.Now()
	tr, err := newTransport(p.caFile)
	if err != nil {
		return "", err
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	stage := p.method + " " + p.url
	req, err := http.NewRequestWithContext(ctx, p.method, p.url, nil)
	if err != nil {
		return "", fmt.Errorf("%s: %w", stage, err)
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := client.Do(req)
	if err != nil {
		return "", stageErr(ctx, p.timeout, stage, err)
	}
	defer resp.Body.Close()

	var body []byte
	if len(p.contains) > 0 || !p.status.contains(resp.StatusCode) {
		body, err = io.ReadAll(io.LimitReader(resp.Body, maxBody))
		if err != nil {
			return "", stageErr(ctx, p.timeout, stage+": read the body", err)
		}
	}
	out := fmt.Sprintf("HTTP %d in %s", resp.StatusCode, since(start))
	if !p.status.contains(resp.StatusCode) {
		msg := fmt.Sprintf("HTTP %d, want %s", resp.StatusCode, p.status)
		if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode >= 300 && resp.StatusCode < 400 {
			msg += " (redirect to " + clipHead(loc, 128) + ", not followed)"
		} else if snip := oneLine(string(body)); snip != "" {
			msg += ": " + clipHead(snip, 128)
		}
		return out, fmt.Errorf("%s", msg)
	}
	if len(p.contains) > 0 && !bytes.Contains(body, p.contains) {
		what := "body"
		if len(body) == maxBody {
			what = "first MiB of the body"
		}
		return out, fmt.Errorf("HTTP %d but the %s (%d bytes) does not contain %q", resp.StatusCode, what, len(body), p.contains)
	}
	return out, nil
}
