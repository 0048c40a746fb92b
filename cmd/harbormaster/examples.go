package main

import "github.com/spf13/cobra"

// examples are the help texts' examples, by command path, for the
// commands whose constructors set none (every runnable command has one:
// TestEveryCommandHasAnExample).
var examples = map[string]string{
	"harbormaster agent": `  harbormaster agent --config /etc/harbormaster/harbormaster.yaml
  harbormaster agent --config /etc/harbormaster/harbormaster.yaml --bootstrap-new-cluster`,
	"harbormaster status":  "  harbormaster status\n  harbormaster status --addr 10.0.10.11:7201 --json",
	"harbormaster members": "  harbormaster members",
	"harbormaster roles":   "  harbormaster roles\n  harbormaster roles --json",
	"harbormaster explain": "  harbormaster explain redis",
	"harbormaster move": `  harbormaster move registry-vip n2
  harbormaster move redis n3 --no-wait
  harbormaster move redis n3 --accept-data-loss   # a vacant Redis role, the lost master gone for good`,
	"harbormaster drain":           "  harbormaster drain n1",
	"harbormaster undrain":         "  harbormaster undrain n1",
	"harbormaster join":            "  harbormaster join 10.0.10.11:7201 --addr 10.0.10.14:7201",
	"harbormaster remove":          "  harbormaster remove n4",
	"harbormaster transfer-leader": "  harbormaster transfer-leader\n  harbormaster transfer-leader n2",
	"harbormaster spec show":       "  harbormaster spec show\n  harbormaster spec show --json",
	"harbormaster spec apply": `  harbormaster spec apply spec.yaml --dry-run
  harbormaster spec apply spec.yaml --expected-version 7`,
	"harbormaster validate": `  harbormaster validate --config /etc/harbormaster/harbormaster.yaml
  harbormaster validate --config /etc/harbormaster/harbormaster.yaml --spec spec.yaml --json`,
	"harbormaster snapshot save":    "  harbormaster snapshot save /var/backups/harbormaster-$(date +%F).snap",
	"harbormaster snapshot inspect": "  harbormaster snapshot inspect /var/backups/harbormaster-2026-12-07.snap",
	"harbormaster recover": `  harbormaster recover --data-dir /var/lib/harbormaster --voters n1=10.0.10.11:7101
  harbormaster recover --data-dir /var/lib/harbormaster --voters n1=10.0.10.11:7101 --from-snapshot backup.snap`,
	"harbormaster tls ca create": "  harbormaster tls ca create --cluster harbor-prod --dir /etc/harbormaster/tls",
	"harbormaster tls cert create": `  harbormaster tls cert create --node n1 --ip 10.0.10.11 --dir /etc/harbormaster/tls
  harbormaster tls cert create --operator alice --role operate --dir ~/.harbormaster`,
	"harbormaster tls rotate-lease-key": "  harbormaster tls rotate-lease-key",
}

// addExamples sets the examples on the command tree below c.
func addExamples(c *cobra.Command) {
	if ex, ok := examples[c.CommandPath()]; ok && c.Example == "" {
		c.Example = ex
	}
	for _, s := range c.Commands() {
		addExamples(s)
	}
}
