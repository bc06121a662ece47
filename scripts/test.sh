#!/usr/bin/env bash
# The test command. On a fresh machine it installs what it needs (into .venv* only), then runs:
#  1. on this machine's python3 with the newest Airflow 3.x: lint (ruff), format check, types
#     (mypy --strict) and every test (unit, integration against the bundled local server,
#     end-to-end on a real Airflow deployment, the set-up of a fresh clone; the distributed e2e
#     deployment too: PostgreSQL, Redis, Celery workers, two triggerers, its harness installing
#     Debian's postgresql and redis-server with apt where missing, as root);
#  2. the unit and integration tests on the oldest Python the project claims (3.10), with every
#     dependency at its declared floor (Airflow 3.3.0, ...: scripts/floors.py);
#  3. the unit and integration tests on the newest Python it claims (3.13), newest Airflow.
# Extra arguments go to every pytest run (e.g. -m "not e2e"). SKIP_OLDEST=1 / SKIP_NEWEST=1 skip
# pass 2 / 3. The interpreters of passes 2 and 3 come from the machine (pythonX.Y on PATH, pyenv,
# or PYTHON_3_10=... / PYTHON_3_13=...); where one is missing that pass is skipped with a warning,
# except under CI=true, where a missing interpreter fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh

OLDEST_PYTHON=3.10 # keep in step with the classifiers in pyproject.toml
NEWEST_PYTHON=3.13
SKIPPED=()
PYTEST_ARGS=("$@")

run_step() { # run_step WHAT COMMAND...: run it; on failure say which step failed.
    local what="$1"
    shift
    "$@" || step_failed "$what" "exit status $? (output above)"
}

PYTHON="$(find_python "${PYTHON:-python3}")" ||
    step_failed "finding Python" "no ${PYTHON:-python3} of version 3.10 or newer on PATH (set PYTHON=...)"
echo "==> installing into .venv ($("$PYTHON" --version), newest Airflow 3.x; log: .venv.install.log)"
ensure_venv .venv "$PYTHON" ".[test]"
.venv/bin/python -c "import airflow; print('    Airflow', airflow.__version__)"

# The browser tests (tests/e2e/test_browser.py) drive Debian's chromium: install it when missing
# (as root; elsewhere they skip, except under CI=true, where they fail).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing chromium for the browser tests (apt-get; log: .venv.chromium.log)"
        apt-get update >.venv.chromium.log 2>&1 ||
            step_failed "apt-get update (for chromium)" "see .venv.chromium.log"
        DEBIAN_FRONTEND=noninteractive apt-get install -y chromium \
            >>.venv.chromium.log 2>&1 || step_failed "apt-get install chromium" "see .venv.chromium.log"
    elif [ "${CI:-}" = "true" ]; then
        step_failed "finding chromium" "no chromium on PATH and not root: install Debian's chromium package"
    else
        printf '\nWARNING: no chromium and not root: the browser tests will skip\n' >&2
    fi
fi

echo "==> ruff check / ruff format --check"
run_step "ruff check" .venv/bin/ruff check .
run_step "ruff format --check" .venv/bin/ruff format --check .

echo "==> mypy (strict on airflow_video_edit)"
run_step "mypy --strict" .venv/bin/mypy

echo "==> pytest: everything ($("$PYTHON" --version), newest Airflow)"
run_step "pytest on .venv" .venv/bin/pytest -q -p no:cacheprovider tests ${PYTEST_ARGS[@]+"${PYTEST_ARGS[@]}"}

# other_pass NAME VERSION DIR [PIN...]: unit + integration tests on Python VERSION in venv DIR.
other_pass() {
    local name="$1" version="$2" dir="$3"
    shift 3
    local python
    if ! python="$(find_python_version "$version")"; then
        if [ "${CI:-}" = "true" ]; then
            step_failed "the $name pass" "no Python $version on this machine (set PYTHON_${version//./_}=...)"
        fi
        printf '\nWARNING: skipping the %s pass: no Python %s on this machine (set PYTHON_%s=...)\n' \
            "$name" "$version" "${version//./_}" >&2
        SKIPPED+=("$name (no Python $version)")
        return 0
    fi
    echo "==> installing into $dir ($("$python" --version), $name; log: $dir.install.log)"
    ensure_venv "$dir" "$python" ".[test]" "$@"
    "$dir/bin/python" -c "import airflow; print('    Airflow', airflow.__version__)"
    echo "==> pytest unit + integration ($name)"
    run_step "pytest on $dir" "$dir/bin/pytest" -q -p no:cacheprovider tests/unit tests/integration \
        ${PYTEST_ARGS[@]+"${PYTEST_ARGS[@]}"}
}

if [ "${SKIP_OLDEST:-0}" != "1" ]; then
    # shellcheck disable=SC2046  # one pin per word
    other_pass "oldest: Python $OLDEST_PYTHON, every dependency at its floor" "$OLDEST_PYTHON" .venv-oldest \
        $("$PYTHON" scripts/floors.py)
fi
if [ "${SKIP_NEWEST:-0}" != "1" ]; then
    other_pass "newest: Python $NEWEST_PYTHON" "$NEWEST_PYTHON" .venv-newest
fi

if [ "${#SKIPPED[@]}" -gt 0 ]; then
    printf '\nWARNING: passes skipped: %s\n' "${SKIPPED[*]}" >&2
fi
