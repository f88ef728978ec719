#!/usr/bin/env bash
# Installs the TAXII 2.1 client and the STIX 2.1 validator the tests use, from PyPI into
# tests/taxii/.venv (run by the test harness; does nothing when requirements.txt is already
# installed; safe to run by hand).
set -euo pipefail
cd "$(dirname "$0")"
stamp=".venv/installed-$(sha256sum requirements.txt | cut -c1-16)"
if [ -f "$stamp" ]; then
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
touch "$stamp"
