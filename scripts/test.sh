#!/usr/bin/env bash
# Installs Portway with its test dependencies, then runs every check CI runs: ruff, mypy --strict, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'
python3 -m ruff check src tests bench
python3 -m mypy
python3 -m pytest -q -p no:cacheprovider "$@"
