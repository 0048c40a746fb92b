#!/usr/bin/env bash
# Installs the Debian packages the tests need, if any is missing. Safe to run
# again: it does nothing when everything is present.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have ip || need+=(iproute2)
have pgrep || need+=(procps)
have nft || need+=(nftables)
have keepalived || need+=(keepalived) # the peer of make bench
have redis-server || need+=(redis-server) # check tests, Redis roles
have redis-cli || need+=(redis-tools)
have docker-registry || need+=(docker-registry) # registry-pull check tests
have redis-sentinel || need+=(redis-sentinel) # the peer of make bench (Redis table)
have systemd-analyze || need+=(systemd) # the packaging test verifies the unit
have useradd || need+=(passwd) # the packaging test runs the postinst
# promtool checks deploy/prometheus (go test ./deploy). Without its
# recommends: they pull node-exporter and its collectors (31.6 s instead of
# 10.9 s measured).
norec=()
have promtool || norec+=(prometheus)
# chromium: the chaos report's pages are tested in it, headless
# (go test ./chaos/report). Its one recommend is chromium-sandbox, which the
# tests do not use (they run it with --no-sandbox, as root); without the
# recommends the install here took 24.2 s (25 packages).
have chromium || have chromium-browser || norec+=(chromium)

if [ "${#need[@]}" -eq 0 ] && [ "${#norec[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing ${need[*]} ${norec[*]}; run as root or install them: apt-get install -y ${need[*]} ${norec[*]}" >&2
  exit 1
fi
echo "deps: installing ${need[*]} ${norec[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if [ "${#need[@]}" -gt 0 ]; then
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ "${#norec[@]}" -gt 0 ]; then
  apt-get install -y -qq --no-install-recommends "${norec[@]}" >/dev/null
fi
