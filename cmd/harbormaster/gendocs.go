package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/harbormaster/harbormaster/internal/version"
)

// Completion scripts' file names under gen-docs' completion directory, by
// shell: the names the Debian package installs them under (bash-completion
// and zsh look a command's completion up by these names).
var completionFiles = map[string]string{
	"bash": "harbormaster",
	"zsh":  "_harbormaster",
	"fish": "harbormaster.fish",
}

// genDocsCmd is the hidden command `make deb` runs to write the man pages
// (cobra's doc generator, one page per command) and the bash, zsh and fish
// completion scripts of this very command tree, so they always match the
// binary they are packaged with.
func genDocsCmd() *cobra.Command {
	var manDir, complDir string
	cmd := &cobra.Command{
		Use:    "gen-docs --man-dir DIR --completion-dir DIR",
		Short:  "Write the man pages and the shell completion scripts (used by make deb)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if manDir == "" && complDir == "" {
				return usageError{fmt.Errorf("gen-docs: give --man-dir, --completion-dir or both")}
			}
			root := cmd.Root()
			if manDir != "" {
				if err := genMan(root, manDir); err != nil {
					return err
				}
			}
			if complDir != "" {
				return genCompletions(root, complDir)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&manDir, "man-dir", "", "directory to write the section 1 man pages into (created)")
	cmd.Flags().StringVar(&complDir, "completion-dir", "", "directory to write the bash, zsh and fish completion scripts into (created)")
	return cmd
}

// genMan writes one man page per available command (harbormaster.1,
// harbormaster-spec-apply.1, ...). Their date is SOURCE_DATE_EPOCH's month
// when it is set (cobra's doc reads it; make deb sets the commit's time), so
// two builds of one commit give the same pages; else this month.
func genMan(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("gen-docs: %w", err)
	}
	root.DisableAutoGenTag = true
	header := &doc.GenManHeader{
		Title:   "HARBORMASTER",
		Section: "1",
		Source:  "harbormaster " + version.Get().Version,
		Manual:  "harbormaster manual",
	}
	if err := doc.GenManTree(root, header, dir); err != nil {
		return fmt.Errorf("gen-docs: man pages in %s: %w", dir, err)
	}
	return nil
}

// genCompletions writes the bash, zsh and fish completion scripts.
func genCompletions(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("gen-docs: %w", err)
	}
	for shell, name := range completionFiles {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("gen-docs: %w", err)
		}
		switch shell {
		case "bash":
			err = root.GenBashCompletionV2(f, true)
		case "zsh":
			err = root.GenZshCompletion(f)
		case "fish":
			err = root.GenFishCompletion(f, true)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("gen-docs: %s completion: %w", shell, err)
		}
	}
	return nil
}
