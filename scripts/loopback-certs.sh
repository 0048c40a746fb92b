#!/usr/bin/env bash
# make loopback-certs: the TLS files of the loopback cluster
# (testdata/loopback/tls/, ignored by git): the CA of cluster "loopback",
# node certificates n1..n3 for 127.0.0.1, and operator certificates read,
# operate and admin. Idempotent: files that exist and are still valid for a
# day are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
HM=${HM_BIN:-bin/harbormaster}
dir=testdata/loopback/tls
mkdir -p "$dir"
valid() { [ -s "$1" ] && openssl x509 -checkend 86400 -noout -in "$1" >/dev/null 2>&1; }
if ! command -v openssl >/dev/null; then
  valid() { [ -s "$1" ]; }
fi
if ! valid "$dir/ca.pem" || [ ! -s "$dir/ca-key.pem" ]; then
  rm -f "$dir"/*.pem
  "$HM" tls ca create --cluster loopback --dir "$dir" --days 3650 >/dev/null
fi
for n in n1 n2 n3; do
  valid "$dir/$n.pem" || "$HM" tls cert create --node "$n" --ip 127.0.0.1 --dns localhost \
    --ca-file "$dir/ca.pem" --dir "$dir" --days 825 --force >/dev/null
done
for r in read operate admin; do
  valid "$dir/$r.pem" || "$HM" tls cert create --operator "$r" --role "$r" \
    --ca-file "$dir/ca.pem" --dir "$dir" --days 825 --force >/dev/null
done
chmod 600 "$dir"/*-key.pem
echo "loopback-certs: $dir (cluster loopback; CLI: --ca-file $dir/ca.pem --cert-file $dir/admin.pem --key-file $dir/admin-key.pem)"
