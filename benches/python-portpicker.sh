# Sourced by benches/compare.sh and benches/storm.sh: makes a scratch dir
# `tmp` and a list `pids` of processes to kill, both cleaned up on exit;
# sets `py` to a Python with Google's portpicker 1.6.0 (PORTPICK_PYTHON, or
# a fresh venv under "$tmp") and `portserver_py` to its portserver.py.
tmp="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

py="${PORTPICK_PYTHON:-}"
if [ -z "$py" ]; then
    echo "== creating a venv with portpicker 1.6.0 and psutil"
    python3 -m venv "$tmp/venv"
    "$tmp/venv/bin/pip" install --quiet --disable-pip-version-check portpicker==1.6.0 psutil
    py="$tmp/venv/bin/python"
fi
portserver_py="$(dirname "$py")/portserver.py"
[ -f "$portserver_py" ] || { echo "no portserver.py next to $py" >&2; exit 1; }
"$py" -c 'import importlib.metadata as m; v = m.version("portpicker"); assert v == "1.6.0", v'
