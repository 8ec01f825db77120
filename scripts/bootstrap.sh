#!/usr/bin/env bash
# Installs everything the service and the tests need on a fresh Debian machine.
# Idempotent: each step checks first, so a second run takes about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# HermiT (via owlready2) needs a Java runtime.
if ! command -v java >/dev/null 2>&1; then
  echo "bootstrap: installing a Java runtime for HermiT"
  apt_install default-jre-headless
fi

# Virtuoso open source: the second real engine the remote-store tests run against
# (tests/test_virtuoso.py starts its own throwaway instance; nothing is started here).
if ! command -v virtuoso-t >/dev/null 2>&1 || ! command -v isql-vt >/dev/null 2>&1; then
  echo "bootstrap: installing Virtuoso open source for the remote-store tests"
  apt_install virtuoso-opensource
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi

# Reinstall only when the declared dependencies change.
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing Python dependencies"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# Browser assets for the web pages (YASGUI, axe-core), from the committed lock file. The app
# serves the few files it needs straight from node_modules, so nothing is fetched at page load.
if ! command -v npm >/dev/null 2>&1; then
  echo "bootstrap: installing Node.js and npm"
  apt_install nodejs npm
fi
# npm ci wipes node_modules, so a stamp of the lock file's hash tells whether the tree is current.
stamp_file=node_modules/.cmpkg-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$want" != "$(cat "$stamp_file" 2>/dev/null || true)" ] \
  || [ ! -f node_modules/@zazuko/yasgui/build/yasgui.min.js ] \
  || [ ! -f node_modules/axe-core/axe.min.js ]; then
  echo "bootstrap: npm ci (from package-lock.json)"
  # --ignore-scripts: the packages ship prebuilt files; no install hook needs to run.
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  echo "$want" >"$stamp_file"
fi

# Headless Chromium for the end-to-end page tests.
if [ ! -x /usr/bin/chromium ]; then
  echo "bootstrap: installing Debian chromium for the end-to-end page tests"
  apt_install chromium
fi
