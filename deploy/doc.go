// Package deploy holds no code: its directory ships the files operators load
// into their monitoring (grafana/harbormaster.json, prometheus/alerts.yml),
// and its tests check them against the metrics the agent exports and run
// promtool on them (docs/operations.md, Monitoring).
package deploy
