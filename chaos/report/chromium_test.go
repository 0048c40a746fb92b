package report

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// needChromium skips the test without Chromium, unless HM_REQUIRE_LAB=1
// (CI), where a missing Chromium fails it with the fix.
func needChromium(t *testing.T) {
	t.Helper()
	if _, err := FindChromium(); err != nil {
		if os.Getenv("HM_REQUIRE_LAB") == "1" {
			t.Fatalf("HM_REQUIRE_LAB=1: %v", err)
		}
		t.Skip(err)
	}
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}

// isRed reports whether a computed CSS colour "rgb(r, g, b)" is a clear red.
func isRed(css string) bool {
	var r, g, b int
	if _, err := fmt.Sscanf(css, "rgb(%d, %d, %d)", &r, &g, &b); err != nil {
		return false
	}
	return r >= 180 && g <= 60 && b <= 60
}

// TestChromiumShowsTheFixture loads the fixture's pages in a real headless
// Chromium: the page loads, it has one lane per role (and the leader and
// outage lanes), the injected S1 violation and the two-holder span are
// drawn red, and Screenshot writes a PNG of the page's width.
func TestChromiumShowsTheFixture(t *testing.T) {
	needChromium(t)
	r := fixture(t)
	dir := t.TempDir()
	if err := Write(dir, fixtureSummary(r)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bctx, stop, err := NewBrowser(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	u, err := FileURL(filepath.Join(dir, RunFile(r.Run)))
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(bctx, chromedp.Navigate(u)); err != nil {
		t.Fatal(err)
	}
	if title := eval[string](t, bctx, `document.title`); title != "chaos run 7 (seed 424242)" {
		t.Fatalf("title = %q", title)
	}
	if n := eval[int](t, bctx, `document.querySelectorAll('.lane[data-role]').length`); n != len(r.Roles) {
		t.Fatalf("%d .lane[data-role] elements, want %d (one per role)", n, len(r.Roles))
	}
	if n := eval[int](t, bctx, `document.querySelectorAll('.lane').length`); n != len(r.Roles)+2 {
		t.Fatalf("%d .lane elements, want %d (roles + leader + outages)", n, len(r.Roles)+2)
	}
	fill := eval[string](t, bctx, `getComputedStyle(document.querySelector('.violation[data-invariant="S1"]')).fill`)
	if !isRed(fill) {
		t.Fatalf("S1 violation fill = %q, want red", fill)
	}
	marker := eval[string](t, bctx, `getComputedStyle(document.querySelector('.violation[data-invariant="S1"] polygon')).fill`)
	if !isRed(marker) {
		t.Fatalf("S1 marker fill = %q, want red", marker)
	}
	dual := eval[string](t, bctx, `getComputedStyle(document.querySelector('rect.span[data-holder="n1+n3"]')).fill`)
	if !isRed(dual) {
		t.Fatalf("two-holder span fill = %q, want red", dual)
	}
	if h := eval[float64](t, bctx, `document.querySelector('.violation[data-invariant="S1"]').getBoundingClientRect().height`); h < 50 {
		t.Fatalf("S1 marker is %v px high, want it drawn across the lanes", h)
	}

	iu, err := FileURL(filepath.Join(dir, IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(bctx, chromedp.Navigate(iu)); err != nil {
		t.Fatal(err)
	}
	if n := eval[int](t, bctx, `document.querySelectorAll('tr.run a[href="run-007.html"]').length`); n != 1 {
		t.Fatalf("summary has %d links to run-007.html, want 1", n)
	}

	pngPath := filepath.Join(dir, "run.png")
	if err := Screenshot(ctx, filepath.Join(dir, RunFile(r.Run)), pngPath); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if w := img.Bounds().Dx(); w != PageWidth {
		t.Fatalf("screenshot is %d px wide, want %d", w, PageWidth)
	}
	if h := img.Bounds().Dy(); h < 400 {
		t.Fatalf("screenshot is %d px high, want the whole page", h)
	}
}
