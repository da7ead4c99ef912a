#!/usr/bin/env bash
# Installs Portway with its test dependencies, then runs every check CI runs: ruff, mypy --strict, pytest.
# pytest runs on two workers (pytest-xdist): most tests wait on sockets and subprocesses, so two workers halve the
# wall time on a 2-core machine (10.5 min instead of 18). `-p no:benchmark`: a pytest-benchmark installed by
# something else would refuse to run under xdist.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'
python3 -m ruff check src tests bench
python3 -m mypy
python3 -m pytest -q -p no:cacheprovider -p no:benchmark -n 2 "$@"
