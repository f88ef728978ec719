#!/usr/bin/env bash
# Installs the systems Escape is measured against, from Debian: mosquitto (mutual-TLS MQTT with
# ACLs), nats-server, nginx (handshakes) and the age command-line tool. Safe to run again; the
# services are not enabled, the load generator starts each one itself with a configuration it writes.
set -euo pipefail
missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v age >/dev/null 2>&1 || missing+=(age)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts packaged daemons on install where it can; the benchmark wants none running.
for service in mosquitto nginx nats-server; do
  $SUDO service "$service" stop >/dev/null 2>&1 || true
done
