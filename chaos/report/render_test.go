package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// fixture is testdata/fixture.json: run 7 on 3 nodes with 3 roles, three
// faults, two holders of registry-vip at once (an S1 violation) and a flap.
func fixture(t testing.TB) Run {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "fixture.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r Run
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("testdata/fixture.json: %v", err)
	}
	return r
}

func fixtureSummary(r Run) Summary {
	return Summary{
		Runs: 1, Violations: r.Violations, Flaps: r.Flaps, Seeds: []int64{r.Seed},
		Nodes: []int{r.Nodes}, Profile: r.Profile, PerRun: []Run{r},
	}
}

func renderRun(t testing.TB, r Run) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := RenderRun(&buf, r); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func parse(t *testing.T, page []byte) *html.Node {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

func hasClass(n *html.Node, class string) bool {
	c, _ := attr(n, "class")
	return slices.Contains(strings.Fields(c), class)
}

// find returns the elements under n for which match is true, in document
// order.
func find(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	for c := range n.Descendants() {
		if c.Type == html.ElementNode && match(c) {
			out = append(out, c)
		}
	}
	return out
}

func text(n *html.Node) string {
	var b strings.Builder
	for c := range n.Descendants() {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
		}
	}
	return b.String()
}

func roleLanes(doc *html.Node) []string {
	var roles []string
	for _, n := range find(doc, func(n *html.Node) bool { return hasClass(n, "lane") }) {
		if r, ok := attr(n, "data-role"); ok {
			roles = append(roles, r)
		}
	}
	return roles
}

func TestRunPageHasOneLanePerRolePlusLeaderAndOutages(t *testing.T) {
	r := fixture(t)
	doc := parse(t, renderRun(t, r))
	want := []string{"registry-vip", "redis-main", "web"}
	if got := roleLanes(doc); !slices.Equal(got, want) {
		t.Fatalf("role lanes = %q, want %q", got, want)
	}
	var kinds []string
	for _, n := range find(doc, func(n *html.Node) bool { return hasClass(n, "lane") }) {
		k, _ := attr(n, "data-lane")
		kinds = append(kinds, k)
	}
	if want := []string{"leader", "outages", "role", "role", "role"}; !slices.Equal(kinds, want) {
		t.Fatalf("lanes = %q, want %q", kinds, want)
	}
}

func TestRunPageShowsViolationsAndTwoHolders(t *testing.T) {
	doc := parse(t, renderRun(t, fixture(t)))
	var invs []string
	for _, n := range find(doc, func(n *html.Node) bool { return hasClass(n, "violation") }) {
		inv, _ := attr(n, "data-invariant")
		invs = append(invs, inv)
	}
	if want := []string{"S1", "flap"}; !slices.Equal(invs, want) {
		t.Fatalf("violation markers = %q, want %q", invs, want)
	}
	dual := find(doc, func(n *html.Node) bool { return n.Data == "rect" && hasClass(n, "dual") })
	if len(dual) != 1 {
		t.Fatalf("%d two-holder spans, want 1", len(dual))
	}
	if h, _ := attr(dual[0], "data-holder"); h != "n1+n3" {
		t.Fatalf("two-holder span holder = %q, want n1+n3", h)
	}
	if f, _ := attr(dual[0], "fill"); f != "#d00000" {
		t.Fatalf("two-holder span fill = %q, want red #d00000", f)
	}
	items := find(doc, func(n *html.Node) bool { return n.Data == "li" && hasClass(n.Parent, "violations") })
	if len(items) != 2 || !strings.Contains(text(items[0]), "S1: registry-vip held by n1 and n3") {
		t.Fatalf("violation list = %d items, first %q", len(items), text(items[0]))
	}
	flaps := find(doc, func(n *html.Node) bool { return hasClass(n, "flap") })
	if len(flaps) != 1 {
		t.Fatalf("%d flap markers, want 1", len(flaps))
	}
	if at, _ := attr(flaps[0], "data-at-ms"); at != "13500" {
		t.Fatalf("flap marker at %q ms, want 13500", at)
	}
}

// A run with a redis-master lane replays with --redis.
func TestReplayCommandRedis(t *testing.T) {
	r := Run{Nodes: 5, Profile: "lan", Seed: 301, Roles: []Lane{{Role: "registry-vip", Kind: "vip"}}}
	if got, want := ReplayCommand(r), "harbormaster-lab chaos --nodes 5 --profile lan --seed 301 --runs 1"; got != want {
		t.Errorf("without Redis: %q, want %q", got, want)
	}
	r.Roles = append(r.Roles, Lane{Role: "redis", Kind: "redis-master"})
	if got, want := ReplayCommand(r), "harbormaster-lab chaos --nodes 5 --profile lan --seed 301 --runs 1 --redis"; got != want {
		t.Errorf("with Redis: %q, want %q", got, want)
	}
}

func TestRunPageHeader(t *testing.T) {
	page := string(renderRun(t, fixture(t)))
	for _, want := range []string{
		"<title>chaos run 7 (seed 424242)</title>",
		"harbormaster-lab chaos --nodes 3 --profile fast --seed 424242 --runs 1",
		"FAILED: 2 violations, 1 flaps",
		`data-kind="partition"`,
		"crash n2",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestRunPageEscapesNames(t *testing.T) {
	r := fixture(t)
	odd := `a<b>&"c'`
	r.Roles[0].Role = odd
	r.Moves[0].Role = odd
	r.Faults[0].Targets = []string{`<script>x()</script>`}
	r.Violations[0].Detail = `<img src=x onerror=alert(1)>`
	page := renderRun(t, r)
	if bytes.Contains(page, []byte("<script>x()")) || bytes.Contains(page, []byte("<img")) || bytes.Contains(page, []byte("<b>&")) {
		t.Fatal("a name reached the page unescaped")
	}
	doc := parse(t, page)
	if got := roleLanes(doc); got[0] != odd {
		t.Fatalf("first lane data-role = %q, want %q", got[0], odd)
	}
	if n := len(find(doc, func(n *html.Node) bool { return n.Data == "script" || n.Data == "img" })); n != 0 {
		t.Fatalf("%d script/img elements, want 0", n)
	}
}

func TestRunPageIsDeterministic(t *testing.T) {
	r := fixture(t)
	for i := range 20 {
		r.Figures[fmt.Sprintf("f%02d", i)] = float64(i)
	}
	first := renderRun(t, r)
	for range 5 {
		if !bytes.Equal(renderRun(t, r), first) {
			t.Fatal("two renderings of one run differ")
		}
	}
}

func TestRunPageCompactLanesForManyRoles(t *testing.T) {
	r := scaleRun(200, 5) // compactness depends on the roles alone
	doc := parse(t, renderRun(t, r))
	if n := len(roleLanes(doc)); n != 200 {
		t.Fatalf("%d role lanes, want 200", n)
	}
	svg := find(doc, func(n *html.Node) bool { return n.Data == "svg" && hasClass(n, "timeline") })[0]
	if !hasClass(svg, "compact") {
		t.Fatal("a 200-role timeline is not compact")
	}
	bg := find(doc, func(n *html.Node) bool { return hasClass(n, "lane-bg") })
	if h, _ := attr(bg[len(bg)-1], "height"); h != "10.0" {
		t.Fatalf("compact lane height = %s, want 10.0", h)
	}
	if h, _ := attr(svg, "height"); len(h) < 4 { // it grows: 202 lanes of 10 px
		t.Fatalf("svg height %s for 202 lanes", h)
	}
}

func TestValidateNamesTheField(t *testing.T) {
	for _, c := range []struct {
		name  string
		edit  func(*Run)
		field string
	}{
		{"no duration", func(r *Run) { r.DurationMS = 0 }, "DurationMS"},
		{"span backwards", func(r *Run) { r.Roles[1].Spans[2].ToMS = 1 }, "Roles[1].Spans[2]"},
		{"fault backwards", func(r *Run) { r.Faults[2].ToMS = 0 }, "Faults[2]"},
		{"outage backwards", func(r *Run) { r.Outages[1].FromMS = 1e9 }, "Outages[1]"},
		{"move of no role", func(r *Run) { r.Moves[3].Role = "nope" }, "Moves[3].Role"},
		{"role twice", func(r *Run) { r.Roles[2].Role = "redis-main" }, "Roles[2].Role"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := fixture(t)
			c.edit(&r)
			err := RenderRun(&bytes.Buffer{}, r)
			if err == nil || !strings.Contains(err.Error(), c.field) {
				t.Fatalf("error = %v, want one naming %s", err, c.field)
			}
		})
	}
}

func TestWriteLinksRunPagesFromTheSummary(t *testing.T) {
	r := fixture(t)
	r2 := fixture(t)
	r2.Run, r2.OK, r2.Violations, r2.Flaps = 8, true, nil, 0
	s := fixtureSummary(r)
	s.Runs, s.PerRun = 2, []Run{r, r2}
	dir := t.TempDir()
	if err := Write(dir, s); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"run-007.html", "run-008.html"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	index, err := os.ReadFile(filepath.Join(dir, IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	doc := parse(t, index)
	rows := find(doc, func(n *html.Node) bool { return n.Data == "tr" && hasClass(n, "run") })
	if len(rows) != 2 {
		t.Fatalf("%d run rows, want 2", len(rows))
	}
	links := find(rows[1], func(n *html.Node) bool { h, _ := attr(n, "href"); return h == "run-008.html" })
	if len(links) != 1 {
		t.Fatal("run 8's row does not link run-008.html")
	}
	vrows := find(doc, func(n *html.Node) bool { return hasClass(n, "violation-row") })
	if len(vrows) != 2 || !strings.Contains(text(vrows[0]), "S1") {
		t.Fatalf("violation rows = %d, want 2 starting with S1", len(vrows))
	}
	strip := find(rows[0], func(n *html.Node) bool { return hasClass(n, "violation") })
	if len(strip) != 2 {
		t.Fatalf("run 7's strip has %d violation marks, want 2", len(strip))
	}
}

func TestWriteRefusesBadRunBeforeWriting(t *testing.T) {
	r := fixture(t)
	r.DurationMS = 0
	dir := t.TempDir()
	if err := Write(dir, fixtureSummary(r)); err == nil {
		t.Fatal("Write accepted a run without a duration")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("Write left %d files behind", len(entries))
	}
}

// scaleRun is a run of roles roles with spans holder spans each, on 5
// nodes, like a scale run.
func scaleRun(roles, spans int) Run {
	const dur = 60000.0
	r := Run{Run: 1, Seed: 1, Nodes: 5, Profile: "lan", DurationMS: dur}
	step := dur / float64(spans)
	for i := range roles {
		l := Lane{Role: fmt.Sprintf("role-%03d", i), Kind: "service"}
		for j := range spans {
			holder := fmt.Sprintf("n%d", (i+j)%5+1)
			if j%7 == 3 {
				holder = ""
			}
			l.Spans = append(l.Spans, Span{Holder: holder, Epoch: uint64(j + 1), FromMS: float64(j) * step, ToMS: float64(j+1) * step})
		}
		r.Roles = append(r.Roles, l)
		r.Moves = append(r.Moves, Move{Role: l.Role, From: "n1", To: "n2", AtMS: 1000, Fault: 0})
	}
	for i := range 20 {
		r.Faults = append(r.Faults, Fault{ID: i, Kind: "crash", Targets: []string{"n1"}, FromMS: float64(i) * 3000, ToMS: float64(i)*3000 + 2000})
	}
	return r
}

// BenchmarkRenderRun200Roles50Spans renders a scale run's page: 200 lanes
// of 50 spans (10,000 bars).
func BenchmarkRenderRun200Roles50Spans(b *testing.B) {
	r := scaleRun(200, 50)
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		if err := RenderRun(&buf, r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(buf.Len()), "bytes/page")
}

func TestCompactTimelineRepeatsTheAxisBelow(t *testing.T) {
	doc := parse(t, renderRun(t, scaleRun(200, 5)))
	axes := find(doc, func(n *html.Node) bool { return hasClass(n, "axis") })
	if len(axes) != 2 || !hasClass(axes[1], "bottom") {
		t.Fatalf("%d axes, want the top one and a bottom one", len(axes))
	}
	small := parse(t, renderRun(t, fixture(t)))
	if n := len(find(small, func(n *html.Node) bool { return hasClass(n, "axis") })); n != 1 {
		t.Fatalf("a 3-role timeline has %d axes, want 1", n)
	}
}
