#!/usr/bin/env bash
# The main job: on a fresh machine, set up the environment, start the bundled local Videos API
# server, run the example DAG video_edit_then_publish against it, check the published MP4 and say
# where it is, then stop the server. Everything it writes stays in ./.demo and ./out.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
. scripts/_venv.sh

step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

step "Setting up the environment in .venv (Airflow 3, this provider, the local server)"
PYTHON="$(find_python "${PYTHON:-python3}")" ||
    step_failed "finding Python" "no ${PYTHON:-python3} of version 3.10 or newer on PATH (set PYTHON=/path/to/python3.x)"
echo "    with $("$PYTHON" --version) ($PYTHON); install log: .venv.install.log"
ensure_venv .venv "$PYTHON" ".[server]"
PY="$ROOT/.venv/bin/python"
"$PY" -c "import airflow, airflow_video_edit; print('    Airflow', airflow.__version__, '/ airflow-video-edit', airflow_video_edit.__version__)"

DEMO="$ROOT/.demo"
rm -rf "$DEMO/airflow-home" "$DEMO/server"
mkdir -p "$DEMO" "$ROOT/out"
export AIRFLOW_HOME="$DEMO/airflow-home"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export VIDEO_EDIT_OUTPUT_DIR="$ROOT/out"
export VIDEO_EDIT_POLL_INTERVAL=2

step "Preparing Airflow's metadata database (SQLite in .demo/)"
"$ROOT/.venv/bin/airflow" db migrate >"$DEMO/db-migrate.log" 2>&1 || { tail -20 "$DEMO/db-migrate.log"; fail "airflow db migrate"; }

PORT="${VIDEO_EDIT_DEMO_PORT:-$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
API_KEY="sk-local-demo"
step "Starting the local Videos API server on http://127.0.0.1:$PORT/v1 (jobs take ~8 s)"
"$ROOT/.venv/bin/airflow-video-edit" serve --host 127.0.0.1 --port "$PORT" --api-key "$API_KEY" \
    --data-dir "$DEMO/server" --job-seconds 8 >"$DEMO/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true' EXIT
"$PY" - "$PORT" "$API_KEY" <<'PYEOF' || { tail -20 "$DEMO/server.log"; fail "the local server did not start"; }
import sys, time, httpx
deadline = time.monotonic() + 30
while True:
    try:
        key = {"Authorization": f"Bearer {sys.argv[2]}"}
        httpx.get(f"http://127.0.0.1:{sys.argv[1]}/_server/stats", headers=key, timeout=1).raise_for_status()
        break
    except httpx.HTTPError:
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.2)
PYEOF
echo "    server is up (log: .demo/server.log)"
# extra job_url_template: each task's "Video job" link opens the server's own job page.
export AIRFLOW_CONN_OPENAI_VIDEOS_DEFAULT="{\"conn_type\": \"openai_videos\", \"host\": \"http://127.0.0.1:$PORT/v1\", \"password\": \"$API_KEY\", \"extra\": {\"job_url_template\": \"http://127.0.0.1:$PORT/jobs/{video_id}\"}}"

step "Running the DAG video_edit_then_publish (airflow dags test; full log: .demo/dag.log)"
set +e
"$ROOT/.venv/bin/airflow" dags test video_edit_then_publish 2>&1 | tee "$DEMO/dag.log" \
    | grep --line-buffered -E "submitted video|video job .*: |downloaded |^published |Marking run|ERROR|Traceback" \
    | sed -E 's/^[0-9T:.-]+Z \[[a-z ]+\] //; s/ +\[airflow[^]]*\].*$//; s/^/    /'
STATUS=${PIPESTATUS[0]}
set -e
[ "$STATUS" -eq 0 ] || fail "airflow dags test exited with $STATUS (see .demo/dag.log)"
grep -q "Marking run .* successful" "$DEMO/dag.log" || fail "the DAG run did not succeed (see .demo/dag.log)"

step "Checking the published MP4"
MP4="$(grep -E '^published ' "$DEMO/dag.log" | tail -1 | cut -d' ' -f2-)"
[ -n "$MP4" ] && [ -f "$MP4" ] || fail "no published MP4 found"
"$PY" - "$MP4" <<'PYEOF' || fail "the published MP4 is not a valid video"
import json, pathlib, sys, av
path = pathlib.Path(sys.argv[1])
with av.open(str(path)) as container:
    stream = container.streams.video[0]
    seconds = float(container.duration / av.time_base)
    print(f"    {stream.codec_context.name} {stream.width}x{stream.height}, {seconds:.1f} s, {path.stat().st_size} bytes")
manifest = json.loads((path.parent / "manifest.json").read_text())
print(f"    manifest: video_id={manifest['video_id']} size={manifest['size']} seconds={manifest['seconds']} sha256={manifest['sha256'][:16]}...")
PYEOF
printf '\nDone. The published MP4 is:\n%s\n' "$MP4"
