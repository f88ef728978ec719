#!/usr/bin/env bash
# Installs the test identity providers' packages from the lock file (run by the test harness
# when tests/oidc/node_modules is missing; safe to run by hand).
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --loglevel=error
