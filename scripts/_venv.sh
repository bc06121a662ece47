# Sourced by the scripts here: create a virtual environment and install the project into it.
# Needs only python3 (3.10+) and access to PyPI; uv is installed with pip when it is missing.

_uv() {
    if command -v uv >/dev/null 2>&1; then
        uv "$@"
    else
        if ! python3 -m uv --version >/dev/null 2>&1; then
            python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
        fi
        python3 -m uv "$@"
    fi
}

# ensure_venv DIR SPEC [EXTRA_REQUIREMENT...]: a venv at DIR with SPEC (e.g. ".[test]") installed.
ensure_venv() {
    local dir="$1" spec="$2"
    shift 2
    if [ ! -x "$dir/bin/python" ]; then
        _uv venv --quiet --python python3 "$dir"
    fi
    VIRTUAL_ENV="$dir" _uv pip install --quiet -e "$spec" "$@"
}
