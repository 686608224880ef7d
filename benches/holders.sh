#!/usr/bin/env bash
# Memory of many live holders: N owners (sleep), one `portpicker OWNER`
# call each, then the holders' RSS and PSS summed from
# /proc/PID/smaps_rollup (PSS splits shared pages between the processes
# that share them, so its sum is what the holders cost together), and how
# long they take to go once their owners are killed.
#
#   benches/holders.sh [N]      # default 1000
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000}"
cargo build --release --quiet --bin portpicker
tool="$(pwd)/target/release/portpicker"
unset PORTSERVER_ADDRESS PORTPICK_CLAIMS
owners=()
cleanup() { kill "${owners[@]}" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq "$n"); do
    sleep 600 & owners+=("$!")
done
start=$(date +%s.%N)
for pid in "${owners[@]}"; do
    "$tool" "$pid" >/dev/null
done
end=$(date +%s.%N)
# Our holders only: those whose owner is one of ours.
declare -A ours
for pid in "${owners[@]}"; do ours[$pid]=1; done
ours_running() {
    for h in $(pgrep -f -- "--portpick-internal-holder" || true); do
        owner=$({ tr '\0' ' ' < "/proc/$h/cmdline"; } 2>/dev/null | awk '{print $3}')
        [[ -n "$owner" && -n "${ours[$owner]:-}" ]] && echo "$h"
    done
    return 0
}
count=0; rss=0; pss=0
for h in $(ours_running); do
    r=$(awk '/^Rss:/ {print $2}' "/proc/$h/smaps_rollup" 2>/dev/null || echo 0)
    p=$(awk '/^Pss:/ {print $2}' "/proc/$h/smaps_rollup" 2>/dev/null || echo 0)
    count=$((count + 1)); rss=$((rss + r)); pss=$((pss + p))
done
echo "calls: $n in $(echo "$end - $start" | bc) s"
echo "live holders: $count"
echo "RSS sum: $rss KiB ($((rss / count)) KiB each)"
echo "PSS sum: $pss KiB ($((pss / count)) KiB each)"
kill "${owners[@]}"
killed=$(date +%s.%N)
while [[ -n "$(ours_running)" ]]; do sleep 0.05; done
echo "all gone $(echo "$(date +%s.%N) - $killed" | bc) s after their owners were killed"
