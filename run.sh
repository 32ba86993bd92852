#!/usr/bin/env bash
# Run Rookery (web + worker) on a fresh machine: makes .venv, installs, starts.
# With DATABASE_URL unset, an embedded PostgreSQL keeps its data in ./instance.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/rookery ] || [ pyproject.toml -nt .venv/.installed ]; then
    [ -d .venv ] || "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e .
    touch .venv/.installed
fi
exec .venv/bin/rookery run "$@"
