#!/usr/bin/env bash
# Scans the mutual-TLS listener's TLS configuration with testssl.sh (the Debian package, installed
# here when missing) and checks the findings against what SECURITY.md promises: nothing below
# TLS 1.2, no weak or CBC suites, forward secrecy, the server's own suite order, no compression,
# no insecure renegotiation, none of the known protocol attacks. Writes tests/tls-scan/RESULTS.md
# and exits non-zero when a promise is broken. Loopback only; about 20 s.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"

if ! command -v testssl >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y -q testssl.sh >/dev/null 2>&1 \
        || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q testssl.sh >/dev/null; }
fi

cargo build -q --locked -p escape-server
work="$(mktemp -d)"
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/escape-data"
printf '[vetting]\nenroll_listen = "127.0.0.1:0"\n' > "$work/escape-data/escape.toml"
(cd "$work" && ESCAPE_LISTEN=127.0.0.1:0 exec "$target/debug/escape-server" > "$work/server.log" 2>&1) &
pid=$!
addr=""
for _ in $(seq 150); do
    addr="$(grep -o 'listening on 127.0.0.1:[0-9]*' "$work/server.log" | cut -d' ' -f3 || true)"
    [ -n "$addr" ] && break
    sleep 0.2
done
[ -n "$addr" ] || { echo "tls-scan: the server did not start" >&2; cat "$work/server.log" >&2; exit 1; }

# -p protocols, -s cipher categories, -f forward secrecy, -P server preference, -R renegotiation,
# -C compression, -U the known vulnerabilities. testssl's exit status counts findings; the
# checks below decide.
testssl --quiet --color 0 --warnings batch -p -s -f -P -R -C -U \
    --jsonfile "$work/scan.json" "$addr" > "$work/scan.txt" 2>&1 || true
python3 "$here/check.py" "$work/scan.json" "$here/RESULTS.md"
