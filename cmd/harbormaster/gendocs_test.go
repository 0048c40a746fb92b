package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGenDocs: the hidden gen-docs command writes a man page for every
// command a user runs (and none for itself) and the three completion
// scripts, each naming the command.
func TestGenDocs(t *testing.T) {
	dir := t.TempDir()
	root := newRoot()
	root.SetArgs([]string{"gen-docs", "--man-dir", filepath.Join(dir, "man"), "--completion-dir", filepath.Join(dir, "completion")})
	if code := exitCode(root.Execute()); code != 0 {
		t.Fatalf("gen-docs: exit %d", code)
	}
	for _, page := range []string{"harbormaster.1", "harbormaster-agent.1", "harbormaster-validate.1", "harbormaster-spec-apply.1", "harbormaster-tls-cert-create.1"} {
		b, err := os.ReadFile(filepath.Join(dir, "man", page))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), ".TH \"HARBORMASTER\" \"1\"") || !strings.Contains(string(b), ".SH NAME") {
			t.Errorf("%s is not a section 1 man page:\n%.300s", page, b)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "man", "harbormaster-gen-docs.1")); err == nil {
		t.Error("the hidden gen-docs command got a man page")
	}
	want := map[string]string{
		"harbormaster":      "complete -o default -F __start_harbormaster harbormaster",
		"_harbormaster":     "#compdef harbormaster",
		"harbormaster.fish": "complete -c harbormaster",
	}
	for name, line := range want {
		b, err := os.ReadFile(filepath.Join(dir, "completion", name))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), line) {
			t.Errorf("completion %s lacks %q", name, line)
		}
	}
}

func TestGenDocsNeedsADir(t *testing.T) {
	root := newRoot()
	root.SetArgs([]string{"gen-docs"})
	if code := exitCode(root.Execute()); code != exitUsage {
		t.Fatalf("gen-docs without a dir: exit %d, want %d", code, exitUsage)
	}
}
