package report

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/chromedp/chromedp"
)

// ErrNoChromium is returned by FindChromium when no Chromium is installed.
var ErrNoChromium = errors.New("no chromium or chromium-browser on PATH: install it with `apt-get install chromium` (scripts/deps.sh does)")

// FindChromium returns the path of the Chromium binary: chromium (Debian),
// else chromium-browser; ErrNoChromium when there is neither.
func FindChromium() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", ErrNoChromium
}

// NewBrowser starts a headless Chromium (without its sandbox: CI runs as
// root) with a PageWidth wide window and returns a chromedp context for one
// tab of it. cancel stops the browser and waits for it to exit.
func NewBrowser(ctx context.Context) (context.Context, context.CancelFunc, error) {
	bin, err := FindChromium()
	if err != nil {
		return nil, nil, err
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("hide-scrollbars", true),
		chromedp.WindowSize(PageWidth, 800),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelTab := chromedp.NewContext(actx)
	return bctx, func() { cancelTab(); cancelAlloc() }, nil
}

// FileURL is the file:// URL of a local page.
func FileURL(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	return (&url.URL{Scheme: "file", Path: abs}).String(), nil
}

// Screenshot loads the page htmlPath in a headless Chromium and writes a
// PNG of the whole page (PageWidth wide, as tall as the page) to pngPath.
// It starts and stops a browser per call; ctx bounds it.
func Screenshot(ctx context.Context, htmlPath, pngPath string) error {
	bctx, cancel, err := NewBrowser(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	png, err := CapturePage(bctx, htmlPath)
	if err != nil {
		return fmt.Errorf("screenshot %s: %w", htmlPath, err)
	}
	if err := os.WriteFile(pngPath, png, 0o644); err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	return nil
}

// CapturePage navigates the tab of bctx (from NewBrowser) to htmlPath and
// returns a full-page PNG: the viewport is set to the page's height first,
// so nothing below the fold is cut.
func CapturePage(bctx context.Context, htmlPath string) ([]byte, error) {
	u, err := FileURL(htmlPath)
	if err != nil {
		return nil, err
	}
	// A viewport 1 px high, so that scrollHeight is the page's own height.
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(PageWidth, 1), chromedp.Navigate(u)); err != nil {
		return nil, err
	}
	h, err := chromedp.Run(bctx, chromedp.Evaluate[int64](`Math.ceil(document.documentElement.scrollHeight)`))
	if err != nil {
		return nil, err
	}
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(PageWidth, h)); err != nil {
		return nil, err
	}
	return chromedp.Run(bctx, chromedp.FullScreenshot(100))
}
