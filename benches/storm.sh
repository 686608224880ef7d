#!/usr/bin/env bash
# Launch storm, ours next to Google's Python portserver 1.6.0 in one run:
# 1,000 client processes with distinct live pids ask at the same moment
# (benches/storm.rs); every one must get a port, all distinct, none past its
# timeout. Prints p50/p99/max latency per server, rounds in turns.
#
#   benches/storm.sh            # creates a temporary venv with pip
#   PORTPICK_PYTHON=/path/to/venv/bin/python benches/storm.sh
#
# Both servers: pool 15000-24999, default flags, release build for ours.
# Reports; exits 1 only when our server loses a client or repeats a port.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

. benches/python-portpicker.sh

echo "== building (release)"
cargo build --release --quiet --example portserver
cargo bench --no-run --quiet --bench storm 2>/dev/null
target="$(cargo metadata --format-version 1 --no-deps | "$py" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
ours_server="$target/release/examples/portserver"
unset PORTSERVER_ADDRESS
# Two descriptors per client in the driver, and room for the servers.
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)"

wait_for() { # address
    for _ in $(seq 1 200); do
        "$py" -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect('\0'+sys.argv[1][1:])" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "server at $1 did not come up" >&2; return 1
}

py_addr="@portpick-storm-py-$$"
"$py" "$portserver_py" --portserver_static_pool=15000-24999 --portserver_address="$py_addr" 2>"$tmp/py.log" &
pids+=("$!")
rs_addr="@portpick-storm-rs-$$"
"$ours_server" --portserver_static_pool=15000-24999 --portserver_address="$rs_addr" 2>"$tmp/rs.log" &
pids+=("$!")
wait_for "$py_addr"
wait_for "$rs_addr"

echo "== storm ($(nproc) cores, Linux $(uname -r))"
PORTPICK_STORM_TARGETS="python=$py_addr,ours=$rs_addr" cargo bench --quiet --bench storm 2>&1 \
    | grep -v '^$\|^running 0\|^test result\|^BENCH'
