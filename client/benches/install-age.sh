#!/usr/bin/env bash
# Installs the `age` command-line tool (Debian package `age`), which the files benchmark
# compares Escape's own encryption against. Safe to run again.
set -euo pipefail
if command -v age >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq age
