package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/harbormaster/harbormaster/chaos/scenario"
)

func sampleRun() scaleRun {
	pt := func(nodes, roles int, moved float64) scenario.ScaleResult {
		return scenario.ScaleResult{Nodes: nodes, Roles: roles, Profile: "lan",
			Trials:     []scenario.ScaleTrial{{Held: roles, Moved: roles, Commands: float64(roles)}},
			AllMovedMs: scenario.Stats{P50: moved, P99: moved, Max: moved, N: 1}}
	}
	return scaleRun{Profile: "lan", Trials: 1, Points: []scenario.ScaleResult{
		pt(3, 1, 700), pt(3, 200, 1400), pt(5, 1, 720), pt(5, 200, 2100)}}
}

// The table has a row per point; the SVG a line per node count through
// its points, the same bytes for the same run; --doc replaces only what
// lies between the markers.
func TestScaleRendering(t *testing.T) {
	run := sampleRun()
	table := scaleTable(run)
	if rows := strings.Count(table, "\n| "); rows != 6 { // header, separator, 4 points
		t.Fatalf("table has %d rows, want a header and 4 points:\n%s", rows, table)
	}
	if !strings.Contains(table, "| 5 | 200 | 200/200 | 2100 / 2100 |") {
		t.Fatalf("table lacks the 5-node 200-role row:\n%s", table)
	}
	svg := scaleSVG(run)
	if svg != scaleSVG(run) {
		t.Fatal("the SVG differs between two renderings of one run")
	}
	if n := strings.Count(svg, "<polyline"); n != 2*len(scalePanels) {
		t.Fatalf("%d lines, want one per node count in each of %d panels", n, len(scalePanels))
	}
	if !strings.Contains(svg, "3 nodes") || !strings.Contains(svg, "5 nodes") || !strings.HasPrefix(svg, "<svg") {
		t.Fatalf("SVG without its legend:\n%s", svg)
	}

	doc := filepath.Join(t.TempDir(), "chaos.md")
	before, after := "# Chaos\n\n## Scale\n", "\n## The report\nkept\n"
	if err := os.WriteFile(doc, []byte(before+scaleBegin+"\nold table\n"+scaleEnd+after), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := replaceScaleTable(doc, table); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(doc)
	if want := before + scaleBegin + "\n" + table + scaleEnd + after; string(got) != want {
		t.Fatalf("doc after --doc:\n%s\nwant:\n%s", got, want)
	}
	if err := os.WriteFile(doc, []byte("no markers\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := replaceScaleTable(doc, table); err == nil || !strings.Contains(err.Error(), scaleBegin) {
		t.Fatalf("a doc without markers: %v, want an error naming the markers", err)
	}
}

// --from renders a saved run without a lab; a file that is not one is
// refused naming the flag.
func TestScaleFrom(t *testing.T) {
	dir := t.TempDir()
	saved := filepath.Join(dir, "run.json")
	b, _ := json.Marshal(sampleRun())
	if err := os.WriteFile(saved, b, 0o644); err != nil {
		t.Fatal(err)
	}
	svg := filepath.Join(dir, "out.svg")
	cmd := scaleCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--from", saved, "--svg", svg, "--table"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "| 3 | 1 |") {
		t.Fatalf("table:\n%s", out.String())
	}
	if got, err := os.ReadFile(svg); err != nil || string(got) != scaleSVG(sampleRun()) {
		t.Fatalf("--svg wrote %d bytes (%v), want the run's plot", len(got), err)
	}
	if err := os.WriteFile(saved, []byte(`{"profile":"lan"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd = scaleCmd()
	cmd.SetArgs([]string{"--from", saved})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "--from") {
		t.Fatalf("--from of a run without points: %v, want an error naming --from", err)
	}
}
