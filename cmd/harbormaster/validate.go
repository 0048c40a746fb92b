package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/harbormaster/harbormaster/agent/config"
	"github.com/harbormaster/harbormaster/internal/tlsid"
	"github.com/harbormaster/harbormaster/spec"
)

// Severities of a validation problem: an error makes validate fail; a
// warning is printed and does not.
const (
	sevError   = "error"
	sevWarning = "warning"
)

// certExpirySoon is how close to its expiry a node certificate draws a
// warning.
const certExpirySoon = 7 * 24 * time.Hour

// problem is one finding of validate.
type problem struct {
	Field    string `json:"field"`
	Message  string `json:"message"`
	Severity string `json:"severity"`
}

// validation is validate's --json output.
type validation struct {
	OK       bool      `json:"ok"`
	Problems []problem `json:"problems"`
}

func validateCmd(g *globals) *cobra.Command {
	var cfgPath, specPath string
	cmd := &cobra.Command{
		Use:   "validate --config FILE [--spec FILE]",
		Short: "Check a node config (with its spec_file and TLS files) and a spec file offline; no agent is contacted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgPath == "" {
				return usageError{errors.New("--config is required: the node's YAML config file")}
			}
			v := validateFiles(cfgPath, specPath, time.Now())
			w := cmd.OutOrStdout()
			if g.json {
				b, err := json.MarshalIndent(v, "", "  ")
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "%s\n", b)
			} else {
				printValidation(w, v)
			}
			if !v.OK {
				return usageError{fmt.Errorf("validate: %d error(s) found", countErrors(v.Problems))}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "node config file (YAML), loaded as the agent loads it")
	cmd.Flags().StringVar(&specPath, "spec", "", "spec file to check, also against the config (default: the config's spec_file)")
	return cmd
}

// validateFiles loads the node config as the agent does (config.Check,
// Load's checks listing every problem: decoding, defaults, each field,
// secret files' modes, spec_file), its TLS files as the agent does
// (tlsid.Load with its node id) when the config is valid, and a spec file,
// and lists what is wrong. A config that cannot be decoded (bad YAML, an
// unknown field) has that one problem.
func validateFiles(cfgPath, specPath string, now time.Time) validation {
	var ps []problem
	add := func(sev, field, format string, args ...any) {
		ps = append(ps, problem{Field: field, Message: fmt.Sprintf(format, args...), Severity: sev})
	}
	cfg, errs := config.Check(cfgPath)
	for _, ce := range errs {
		add(sevError, ce.Field, "%s: %s", cfgPath, ce.Msg)
	}
	if cfg != nil && cfg.TLS != nil {
		st, err := tlsid.Load(tlsid.Files{CA: cfg.TLS.CAFile, Cert: cfg.TLS.CertFile, Key: cfg.TLS.KeyFile}, func(id tlsid.Identity) error {
			if id.Kind != tlsid.Node || id.Name != cfg.NodeID {
				return fmt.Errorf("the certificate is for %s, this node is %s; make one with harbormaster tls cert create --node %s", id, cfg.NodeID, cfg.NodeID)
			}
			return nil
		})
		switch {
		case err != nil:
			add(sevError, "tls", "%v", err)
		case st.NotAfter().Sub(now) < certExpirySoon:
			add(sevWarning, "tls.cert_file", "%s expires %s (in %s); renew it with harbormaster tls cert create --node %s and reload (SIGHUP)",
				cfg.TLS.CertFile, st.NotAfter().UTC().Format(time.RFC3339), st.NotAfter().Sub(now).Round(time.Hour), cfg.NodeID)
		}
	}
	var sp *spec.Spec
	if specPath != "" {
		doc, err := readSpecFile(specPath)
		if err == nil {
			sp, err = spec.Parse(doc)
			if err != nil {
				add(sevError, "spec", "%s: %v", specPath, err)
			}
		} else {
			add(sevError, "spec", "%v; fix the --spec path", err)
		}
	} else if cfg != nil {
		sp = cfg.Spec
	}
	if cfg != nil && sp != nil {
		ps = append(ps, specAgainstConfig(cfg, sp)...)
	}
	v := validation{OK: countErrors(ps) == 0, Problems: ps}
	if v.Problems == nil {
		v.Problems = []problem{}
	}
	return v
}

func readSpecFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, spec.MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read spec %s: %w", path, err)
	}
	if len(b) > spec.MaxSize {
		return nil, fmt.Errorf("spec %s is larger than %d bytes", path, spec.MaxSize)
	}
	return b, nil
}

// specAgainstConfig warns of the roles this node is a candidate for but
// can never hold: a required check or a service actuator its config does
// not define, a vip role without vip_interface. Warnings only: other nodes
// may define them (`spec apply` refuses a required check no registered
// node defines).
func specAgainstConfig(cfg *config.Config, sp *spec.Spec) []problem {
	var out []problem
	if cfg.Witness {
		return nil
	}
	checks := cfg.CheckNames()
	for i, r := range sp.Roles {
		if _, ok := r.Candidate(cfg.NodeID); !ok {
			continue
		}
		f := fmt.Sprintf("roles[%d]", i)
		for k, c := range r.Requires {
			if !slices.Contains(checks, c) {
				out = append(out, problem{Field: fmt.Sprintf("%s.requires[%d]", f, k), Severity: sevWarning,
					Message: fmt.Sprintf("role %s requires check %q, which this node's config does not define (its checks: %s); this node never qualifies for %s unless it adds the check; other nodes may define it", r.Name, c, orNoneList(checks), r.Name)})
			}
		}
		_, runs := cfg.Services[r.Name]
		switch {
		case r.Type == spec.TypeService && !r.Marker && !runs:
			out = append(out, problem{Field: f + ".name", Severity: sevWarning,
				Message: fmt.Sprintf("service role %s has no actuator in this node's config (services: %s); this node never holds it unless services.%s is added", r.Name, orNoneList(cfg.ServiceNames()), r.Name)})
		case r.Type == spec.TypeVIP && cfg.VIPInterface == "":
			out = append(out, problem{Field: f + ".type", Severity: sevWarning,
				Message: fmt.Sprintf("vip role %s needs vip_interface, which this node's config does not set; this node never holds it", r.Name)})
		}
	}
	return out
}

func orNoneList(ss []string) string {
	if len(ss) == 0 {
		return "none"
	}
	return fmt.Sprint(ss)
}

func countErrors(ps []problem) int {
	n := 0
	for _, p := range ps {
		if p.Severity == sevError {
			n++
		}
	}
	return n
}

func printValidation(w io.Writer, v validation) {
	for _, p := range v.Problems {
		field := p.Field
		if field != "" {
			field += ": "
		}
		fmt.Fprintf(w, "%s: %s%s\n", p.Severity, field, p.Message)
	}
	if v.OK {
		fmt.Fprintln(w, "ok")
	}
}
