#!/usr/bin/env bash
# Set up (first time) and run the hub on its embedded defaults: SQLite, embedded MQTT broker, console notifier.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  echo "demo: creating .venv"
  python3 -m venv .venv
fi
if [ ! -f .venv/.demo-stamp ] || [ pyproject.toml -nt .venv/.demo-stamp ]; then
  echo "demo: installing the hub into .venv"
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -e .
  touch .venv/.demo-stamp
fi
exec .venv/bin/iothub demo "$@"
