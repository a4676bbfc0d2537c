#!/usr/bin/env bash
# Installs everything the test suite needs into .venv and runs the whole suite (slow and
# browser tests included). This is the README's test command; CI runs it too.
set -euo pipefail
cd "$(dirname "$0")/.."

# A real Chromium for the browser tests (Debian's package; never `playwright install`).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "note: chromium is not installed (sudo apt-get install chromium chromium-driver); browser tests will be skipped" >&2
  fi
fi

python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -r requirements-test.txt -e .

export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1
python -m pytest "$@"
