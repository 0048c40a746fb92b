package report

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{"secs": secs}).ParseFS(templateFS, "templates/*.tmpl"))

// IndexFile is the name of the summary page in a report directory.
const IndexFile = "index.html"

// RunFile is the name of run n's page in a report directory: run-007.html.
func RunFile(n int) string { return fmt.Sprintf("run-%03d.html", n) }

// Write writes a report of s into dir (created if missing): IndexFile, the
// summary, and one RunFile(r.Run) per run of s.PerRun. The pages are
// self-contained (inline CSS and SVG, no script, nothing fetched) and the
// same bytes for the same Summary. It refuses a run it cannot draw (see
// Run.Validate) before writing anything.
func Write(dir string, s Summary) error {
	for _, r := range s.PerRun {
		if err := r.Validate(); err != nil {
			return err
		}
	}
	for _, r := range s.PerRun {
		if err := WriteRun(dir, r); err != nil {
			return err
		}
	}
	return WriteSummary(dir, s)
}

// WriteRun writes run r's page to dir/RunFile(r.Run).
func WriteRun(dir string, r Run) error {
	return writeFile(filepath.Join(dir, RunFile(r.Run)), func(w io.Writer) error { return RenderRun(w, r) })
}

// WriteSummary writes the summary page of s to dir/IndexFile. It links to
// the run pages Write writes beside it.
func WriteSummary(dir string, s Summary) error {
	return writeFile(filepath.Join(dir, IndexFile), func(w io.Writer) error { return RenderSummary(w, s) })
}

// RenderRun writes run r's page to w.
func RenderRun(w io.Writer, r Run) error {
	if err := r.Validate(); err != nil {
		return err
	}
	return pages.ExecuteTemplate(w, "run.tmpl", newRunView(r))
}

// RenderSummary writes the summary page of s to w.
func RenderSummary(w io.Writer, s Summary) error {
	for _, r := range s.PerRun {
		if err := r.Validate(); err != nil {
			return err
		}
	}
	return pages.ExecuteTemplate(w, "summary.tmpl", newSummaryView(s))
}

// writeFile renders into memory first so that a failed render leaves no
// half-written page.
func writeFile(path string, render func(io.Writer) error) error {
	var buf bytes.Buffer
	if err := render(&buf); err != nil {
		return fmt.Errorf("render %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("report dir: %w", err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write report page: %w", err)
	}
	return nil
}

// The mini timeline of a run on the summary page.
const (
	stripW = 240
	stripH = 16
)

type stripMark struct{ X, W px }

type summaryRun struct {
	Run, Nodes, Faults, Moves, Flaps int
	Seed                             int64
	Profile, OutageMax, File         string
	OK                               bool
	Bands, Outages, Violations       []stripMark
}

type summaryViolation struct {
	Run                               int
	Seed                              int64
	File, At, Time, Invariant, Detail string
}

type summaryView struct {
	Title          string
	S              Summary
	Failed         bool
	Nodes          string
	Violations     []summaryViolation
	Runs           []summaryRun
	StripW, StripH int
}

func newSummaryView(s Summary) summaryView {
	v := summaryView{
		Title:  "chaos: " + s.Profile,
		S:      s,
		Failed: s.OK < s.Runs || len(s.Violations) > 0 || s.Flaps > 0,
		Nodes:  joinInts(s.Nodes),
		StripW: stripW, StripH: stripH,
	}
	for _, vi := range s.Violations {
		sv := summaryViolation{Run: vi.Run, Seed: vi.Seed, File: RunFile(vi.Run), At: secs(vi.AtMS), Invariant: vi.Invariant, Detail: vi.Detail}
		if !vi.Time.IsZero() {
			sv.Time = vi.Time.UTC().Format(time.RFC3339Nano)
		}
		v.Violations = append(v.Violations, sv)
	}
	for _, r := range s.PerRun {
		v.Runs = append(v.Runs, newSummaryRun(r))
	}
	return v
}

func newSummaryRun(r Run) summaryRun {
	sr := summaryRun{
		Run: r.Run, Seed: r.Seed, Nodes: r.Nodes, Profile: r.Profile, OK: r.OK,
		Faults: len(r.Faults), Moves: len(r.Moves), Flaps: r.Flaps, File: RunFile(r.Run),
	}
	at := func(ms float64) px { return px(math.Max(0, math.Min(ms, r.DurationMS)) / r.DurationMS * stripW) }
	mark := func(from, to float64) stripMark {
		return stripMark{X: at(from), W: px(math.Max(1, float64(at(to)-at(from))))}
	}
	longest := 0.0
	for _, f := range r.Faults {
		sr.Bands = append(sr.Bands, mark(f.FromMS, f.ToMS))
	}
	for _, o := range r.Outages {
		sr.Outages = append(sr.Outages, mark(o.FromMS, o.ToMS))
		longest = math.Max(longest, o.ToMS-o.FromMS)
	}
	for _, vi := range r.Violations {
		sr.Violations = append(sr.Violations, stripMark{X: at(vi.AtMS), W: 2})
	}
	sr.OutageMax = secs(longest)
	return sr
}

func joinInts(ns []int) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ", ")
}
