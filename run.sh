#!/usr/bin/env bash
# One entry point for people and CI.
#   ./run.sh serve [launch.py args]   install (first time only) and start the app on 127.0.0.1:7860
#   ./run.sh test  [pytest args]      install (first time only) and run the whole test suite
#   ./run.sh <any launch.py subcommand> ...
# The virtual environment lives outside the clone (default ~/.cache/agenticlabeling/venv, or
# $AGL_VENV) so CI and new clones do not reinstall several GB of wheels every run; it is
# re-synced whenever requirements*.txt change.
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$(pwd)"
VENV="${AGL_VENV:-$HOME/.cache/agenticlabeling/venv}"
PY="${AGL_PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3

ensure_venv() {  # $1 = requirements file
  local req="$1" stamp hash
  hash="$(cat requirements.txt "$req" | sha256sum | cut -c1-16)"
  stamp="$VENV/.agl-installed-$hash"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[run.sh] creating virtual environment in $VENV" >&2
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2 || true
  fi
  if [ ! -f "$stamp" ]; then
    echo "[run.sh] installing $req into $VENV (first run: a few minutes)" >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >&2
    touch "$stamp"
  fi
}

ensure_chromium() {
  if [ -x /usr/bin/chromium ]; then return 0; fi
  echo "[run.sh] installing Debian's chromium for the browser tests" >&2
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >&2
}

export GRADIO_ANALYTICS_ENABLED=False HF_HUB_DISABLE_TELEMETRY=1 YOLO_OFFLINE=1
cmd="${1:-serve}"
[ $# -gt 0 ] && shift
case "$cmd" in
  test)
    ensure_venv requirements-dev.txt
    ensure_chromium || echo "[run.sh] WARNING: chromium could not be installed; browser tests will fail" >&2
    export HF_HUB_OFFLINE=1
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  *)
    ensure_venv requirements.txt
    exec "$VENV/bin/python" "$ROOT/launch.py" "$cmd" "$@"
    ;;
esac
