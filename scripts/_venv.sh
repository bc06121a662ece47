# Sourced by the scripts here: create a virtual environment inside the project and install the
# project into it. Needs only a Python 3.10+ interpreter with its standard venv module, and a
# package index. Nothing is installed outside the venv: pip runs as the venv's own interpreter,
# and uv, when it is on PATH, is only used for speed, pointed at that interpreter explicitly.

# step_failed WHAT WHY: say which step failed and why, then stop.
step_failed() {
    printf '\nFAILED: %s\n  %s\n' "$1" "$2" >&2
    exit 1
}

# first_python CHECK NAME...: the first NAME (a command or a path) whose interpreter runs and
# makes the Python expression CHECK true (``sys`` imported), printed as a path; nothing if none.
first_python() {
    local check="$1" name path
    shift
    for name in "$@"; do
        [ -n "$name" ] || continue
        path="$(command -v "$name" 2>/dev/null)" || continue
        if "$path" -c "import sys; sys.exit(not ($check))" 2>/dev/null; then
            printf '%s\n' "$path"
            return 0
        fi
    done
    return 1
}

# find_python [NAME...]: the first of at least Python 3.10 among NAME (default python3).
find_python() {
    first_python "sys.version_info >= (3, 10)" "${@:-python3}"
}

# ensure_venv DIR PYTHON SPEC [REQUIREMENT...]: a venv at DIR made by PYTHON, with the project
# (SPEC, e.g. ".[test]") installed editable, plus any extra requirements (pins, e.g.
# "apache-airflow==3.3.0"). Logs go to DIR.install.log.
ensure_venv() {
    local dir="$1" python="$2" spec="$3"
    shift 3
    local log="$dir.install.log"
    if [ ! -x "$dir/bin/python" ]; then
        "$python" -m venv "$dir" >"$log" 2>&1 || {
            rm -rf "$dir"
            step_failed "creating the virtual environment $dir with $python" \
                "$(tail -3 "$log") (on Debian/Ubuntu: apt-get install python3-venv)"
        }
    fi
    local venv_python="$dir/bin/python"
    if command -v uv >/dev/null 2>&1; then
        uv pip install --quiet --python "$venv_python" -e "$spec" "$@" >>"$log" 2>&1 || {
            tail -25 "$log" >&2
            step_failed "installing $spec into $dir with uv" "see the lines above and $log"
        }
    else
        "$venv_python" -m pip install --quiet --disable-pip-version-check --upgrade pip >>"$log" 2>&1 || true
        "$venv_python" -m pip install --quiet --disable-pip-version-check -e "$spec" "$@" >>"$log" 2>&1 || {
            tail -25 "$log" >&2
            step_failed "installing $spec into $dir with pip" \
                "see the lines above and $log (a package index must be reachable)"
        }
    fi
}

# find_python_version X.Y: an interpreter of Python X.Y from this machine: $PYTHON_X_Y (e.g.
# PYTHON_3_10=/opt/py310/bin/python3), pythonX.Y on PATH, or a pyenv-installed X.Y. Nothing
# when the machine has none.
find_python_version() {
    local version="$1" variable pyenv_builds=""
    variable="PYTHON_${version//./_}"
    if command -v pyenv >/dev/null 2>&1; then
        pyenv_builds="$(ls -d "$(pyenv root)/versions/$version".*/bin/python"$version" 2>/dev/null | sort -V -r)"
    fi
    # shellcheck disable=SC2086  # one path per word
    first_python "sys.version_info[:2] == (${version/./, })" "${!variable:-}" "python$version" $pyenv_builds
}
