#!/usr/bin/env bash
# The test command. On a fresh machine it installs what it needs, then runs, in order:
# lint (ruff), format check, types (mypy --strict), and the tests (unit, integration against the
# bundled local server, end-to-end on a real Airflow deployment) on the newest Airflow; then the
# unit and integration tests again on the oldest supported Airflow (3.3.0).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh

echo "==> installing into .venv (newest Airflow 3.x)"
ensure_venv .venv ".[test]"
.venv/bin/python -c "import airflow; print('    Airflow', airflow.__version__)"

echo "==> ruff check / ruff format --check"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "==> mypy (strict on airflow_video_edit)"
.venv/bin/mypy

echo "==> pytest (newest Airflow)"
.venv/bin/pytest -q -p no:cacheprovider tests "$@"

if [ "${SKIP_OLDEST:-0}" != "1" ]; then
    echo "==> installing into .venv-oldest (Airflow 3.3.0, the oldest supported)"
    ensure_venv .venv-oldest ".[test]" "apache-airflow==3.3.0"
    .venv-oldest/bin/python -c "import airflow; print('    Airflow', airflow.__version__)"
    echo "==> pytest unit + integration (oldest Airflow)"
    .venv-oldest/bin/pytest -q -p no:cacheprovider tests/unit tests/integration
fi
