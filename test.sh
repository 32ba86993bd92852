#!/usr/bin/env bash
# Run Rookery's checks and tests on a fresh machine: makes .venv, installs the test
# extras (and Debian's chromium for the browser tests when run as root), then runs
# ruff and pytest. With DATABASE_URL unset the tests start their own PostgreSQL.
# Arguments go to pytest, e.g. ./test.sh tests/unit -x
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/pytest ] || [ pyproject.toml -nt .venv/.installed-test ]; then
    [ -d .venv ] || "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[test]'
    touch .venv/.installed-test
fi
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing Debian's chromium for the browser tests..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# pytest's temporary folders per checkout: test runs in two clones (or worktrees) at once
# would otherwise share /tmp/pytest-of-$USER and prune each other's embedded PostgreSQL.
PYTEST_DEBUG_TEMPROOT=${PYTEST_DEBUG_TEMPROOT:-${TMPDIR:-/tmp}/rookery-tests-$(pwd | cksum | cut -d' ' -f1)}
export PYTEST_DEBUG_TEMPROOT
mkdir -p "$PYTEST_DEBUG_TEMPROOT"
exec .venv/bin/pytest "$@"
