#!/usr/bin/env bash
# make demo: a 3-node harbormaster cluster on loopback (testdata/loopback),
# status, a crash of the leader (kill -9), the new leader and the roles that
# moved, then cleanup. Ctrl-C cleans up too.
set -euo pipefail
cd "$(dirname "$0")/.."
HM=${HM_BIN:-bin/harbormaster}
# The loopback cluster runs mutual TLS (make loopback-certs); the CLI uses
# the admin operator certificate.
HM_BIN="$HM" scripts/loopback-certs.sh >/dev/null
export HARBORMASTER_CA_FILE=testdata/loopback/tls/ca.pem
export HARBORMASTER_CERT_FILE=testdata/loopback/tls/admin.pem
export HARBORMASTER_KEY_FILE=testdata/loopback/tls/admin-key.pem
work=$(mktemp -d /tmp/harbormaster-demo.XXXXXX)
declare -A pid

cleanup() {
  for n in "${!pid[@]}"; do kill -9 "${pid[$n]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
  echo "demo: cleaned up"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for port in 7101 7102 7103 7201 7202 7203 7301 7302 7303; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "demo: port $port is in use (another harbormaster?); stop it first" >&2
    exit 1
  fi
done

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
start() {
  "$HM" agent --config "testdata/loopback/$1.yaml" --data-dir "$work/$1" >>"$work/$1.log" 2>&1 &
  pid[$1]=$!
}
api() { echo "127.0.0.1:720${1#n}"; }
leader_from() { "$HM" status --json --addr "$(api "$1")" 2>/dev/null | sed -n 's/^  "leader": "\(.*\)",$/\1/p'; }
now_ms() { date +%s%3N; }

say "Starting n1, n2, n3 on loopback, mutual TLS (cluster CA testdata/loopback/tls/ca.pem; logs in $work)"
for n in n1 n2 n3; do start $n; done
for _ in $(seq 100); do
  l=$(leader_from n1 || true)
  [ -n "$l" ] && "$HM" roles --addr "$(api n1)" | grep -q 'held' && break
  sleep 0.1
done
[ -n "${l:-}" ] || { echo "demo: no leader after 10 s; see $work/*.log" >&2; exit 1; }
sleep 1.5 # let the first placement settle

say "harbormaster status"
"$HM" status --addr "$(api n1)"
say "harbormaster roles"
"$HM" roles --addr "$(api n1)"

leader=$(leader_from n1)
holder=$("$HM" roles --addr "$(api n1)" | awk '$1 == "notary" {print $3}')
if [ "$holder" != "$leader" ]; then
  say "harbormaster transfer-leader $holder (so that the crash takes the leader and a role holder at once)"
  "$HM" transfer-leader "$holder" --addr "$(api n1)"
  for _ in $(seq 100); do [ "$(leader_from n1)" = "$holder" ] && break; sleep 0.05; done
  leader=$(leader_from n1)
fi
survivor=n1; [ "$leader" = n1 ] && survivor=n2
say "Crash: kill -9 of the leader $leader"
t0=$(now_ms)
kill -9 "${pid[$leader]}"; wait "${pid[$leader]}" 2>/dev/null || true; unset "pid[$leader]"
echo "roles held by $leader: $("$HM" roles --addr "$(api $survivor)" | awk -v n="$leader" '$3 == n {print $1}' | xargs)"
new=""
while :; do
  new=$(leader_from $survivor || true)
  [ -n "$new" ] && [ "$new" != "$leader" ] && break
  [ $(( $(now_ms) - t0 )) -gt 10000 ] && { echo "demo: no new leader after 10 s" >&2; exit 1; }
  sleep 0.02
done
echo "new leader $new after $(( $(now_ms) - t0 )) ms"
while "$HM" roles --addr "$(api $survivor)" | awk 'NR>1 {print $3}' | grep -qx "$leader"; do
  [ $(( $(now_ms) - t0 )) -gt 15000 ] && { echo "demo: roles did not move" >&2; exit 1; }
  sleep 0.05
done
echo "roles of $leader moved after $(( $(now_ms) - t0 )) ms (a majority of voters saw its 500 ms lease end, and a new leader had to be elected)"
"$HM" roles --addr "$(api $survivor)"

say "Restart $leader: it rejoins with all committed state"
start "$leader"
sleep 2
"$HM" members --addr "$(api $survivor)"

say "harbormaster events (the audit trail)"
"$HM" events --addr "$(api $survivor)"
