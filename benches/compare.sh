#!/usr/bin/env bash
# Ours next to Google's Python portpicker 1.6.0, in one run on one machine.
#
#   benches/compare.sh            # creates a temporary venv with pip
#   PORTPICK_PYTHON=/path/to/venv/bin/python benches/compare.sh
#
# Prints ours, theirs and the ratio. Every figure is a median over rounds;
# on a shared 2-core machine compare the ratios, not the absolute times.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

tmp="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

py="${PORTPICK_PYTHON:-}"
if [ -z "$py" ]; then
    python3 -m venv "$tmp/venv"
    "$tmp/venv/bin/pip" install --quiet --disable-pip-version-check portpicker==1.6.0 psutil
    py="$tmp/venv/bin/python"
fi
portserver_py="$(dirname "$py")/portserver.py"
[ -f "$portserver_py" ] || { echo "no portserver.py next to $py" >&2; exit 1; }

echo "== building (release)"
cargo build --release --quiet --example portserver --bin portpicker
target="$(cargo metadata --format-version 1 --no-deps | "$py" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
ours_tool="$target/release/portpicker"
ours_server="$target/release/examples/portserver"

echo "== Python library and tools (timeit, same machine, same run)"
export PORTPICK_LOCK_DIR="$tmp/locks"
"$py" - "$ours_tool" > "$tmp/py.txt" <<'PYEOF'
import os, socket, statistics, subprocess, sys, timeit
import portpicker

def per_call(stmt, number, rounds=9, setup="pass", g=None):
    t = timeit.repeat(stmt, setup=setup, number=number, repeat=rounds, globals=g)
    return statistics.median(t) / number * 1e9

def pick():
    p = portpicker.pick_unused_port()
    portpicker.return_port(p)

s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.bind(("::", 0))
free = s.getsockname()[1]
s.close()
print("py_pick", round(per_call("pick()", 1000, g={"pick": pick})))
print("py_is_port_free", round(per_call("f(port)", 1000, g={"f": portpicker.is_port_free, "port": free})))
env = dict(os.environ)
env.pop("PORTSERVER_ADDRESS", None)
def run(cmd, n=30):
    times = []
    for _ in range(n):
        t = timeit.default_timer()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, env=env)
        times.append(timeit.default_timer() - t)
    return statistics.median(times) * 1e9
pid = str(os.getpid())
print("py_tool", round(run([sys.executable, "-m", "portpicker", pid])))
print("ours_tool_same_harness", round(run([sys.argv[1], pid])))
PYEOF
cat "$tmp/py.txt"

wait_for() { # address
    for _ in $(seq 1 200); do
        "$ours_tool" --stats "$1" >/dev/null 2>&1 && return 0
        # Python's server does not know `stats`: any accepted connection will do.
        "$py" -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect('\0'+sys.argv[1][1:])" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "server at $1 did not come up" >&2; return 1
}

bench_external() { # label address pid
    PORTPICK_BENCH_SERVER="$2" PORTPICK_BENCH_FILL=1 PORTPICK_BENCH_SERVER_PID="$3" \
        cargo bench --quiet --bench server 2>&1 >/dev/null | sed -n "s/^BENCH ext_/$1_/p"
}

echo "== Python's portserver.py (pool 15000-24999)"
addr="@portpick-compare-py-$$"
"$py" "$portserver_py" --portserver_static_pool=15000-24999 --portserver_address="$addr" 2>/dev/null &
pids+=($!); pypid=$!
wait_for "$addr"
bench_external py_server "$addr" "$pypid" > "$tmp/pyserver.txt"
kill "$pypid"; cat "$tmp/pyserver.txt"

echo "== our portserver (example binary, same pool, same client)"
addr="@portpick-compare-rs-$$"
"$ours_server" --portserver_static_pool=15000-24999 --portserver_address="$addr" 2>/dev/null &
pids+=($!); rspid=$!
wait_for "$addr"
bench_external rs_server "$addr" "$rspid" > "$tmp/rsserver.txt"
kill "$rspid"; cat "$tmp/rsserver.txt"

echo "== our benches"
cargo bench --quiet --bench pick 2>"$tmp/pick.txt" | cat
cargo bench --quiet --bench server 2>"$tmp/server.txt" | cat

get() { # file key
    sed -n "s/^\(BENCH \)\{0,1\}$2 //p" "$1" | head -1
}
row() { # what ours theirs unit
    "$py" -c '
import sys
what, ours, theirs, unit = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
def f(v):
    if unit == "KiB": return "%.1f MiB" % (v / 1024)
    for d, u in ((1e9, "s"), (1e6, "ms"), (1e3, "us")):
        if v >= d: return "%.3g %s" % (v / d, u)
    return "%.0f ns" % v
print("| %s | %s | %s | %.1fx |" % (what, f(ours), f(theirs), theirs / ours))
' "$1" "$2" "$3" "$4"
}

echo
echo "== ours vs Python's portpicker 1.6.0 ($(nproc) cores, $(uname -r))"
echo "| what | ours | Python | Python / ours |"
echo "| --- | --- | --- | --- |"
row "pick_unused_port + return_port" "$(get "$tmp/pick.txt" pick)" "$(get "$tmp/py.txt" py_pick)" ns
row "is_port_free (free port)" "$(get "$tmp/pick.txt" is_port_free)" "$(get "$tmp/py.txt" py_is_port_free)" ns
row "tool as a whole process (\`portpicker \$PID\`)" "$(get "$tmp/py.txt" ours_tool_same_harness)" "$(get "$tmp/py.txt" py_tool)" ns
row "portserver allocation round trip" "$(get "$tmp/rsserver.txt" rs_server_alloc)" "$(get "$tmp/pyserver.txt" py_server_alloc)" ns
row "portserver \"no port\", 10,000 held" "$(get "$tmp/rsserver.txt" rs_server_noport)" "$(get "$tmp/pyserver.txt" py_server_noport)" ns
row "portserver peak RSS, 10,000 held" "$(get "$tmp/rsserver.txt" rs_server_rss_kib)" "$(get "$tmp/pyserver.txt" py_server_rss_kib)" KiB
