# The tool as a whole process, interleaved round by round with a minimal
# process that binds and prints a port (benches/pick.rs in that mode), `true`
# and Python's `python -m portpicker PID`; "cold": no holder of ours runs
# (they are killed, untimed, before the call), "warm": earlier calls' holders
# run. Ratios are taken per round.
#
#   PY=/path/to/venv/bin/python  # with portpicker==1.6.0
#   $PY benches/cli_compare.py target/release/portpicker target/release/deps/pick-HASH [ROUNDS]
import os, statistics, subprocess, sys, time, signal
tool, bench = sys.argv[1], sys.argv[2]
env = dict(os.environ); env.pop("PORTSERVER_ADDRESS", None); env.pop("PORTPICK_CLAIMS", None)
owner = subprocess.Popen(["sleep", "600"])
pid = str(owner.pid)
def holders():
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                c = open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if len(c) > 2 and c[1] == b"--portpick-internal-holder" and c[2] == pid.encode():
                out.append(int(d))
    return out
def kill_holders():
    for h in holders():
        try: os.kill(h, signal.SIGKILL)
        except OSError: pass
    while holders(): time.sleep(0.001)
cases = {
    "true": ["true"],
    "bind_print": [bench],
    "py_cli": [sys.executable, "-m", "portpicker", pid],
    "ours_warm": [tool, pid],
    "ours_cold": [tool, pid],
}
benv = dict(env, PORTPICK_BENCH_BIND_PRINT="1")
times = {k: [] for k in cases}
ratios = {k: [] for k in ("ours_warm", "ours_cold", "py_cli")}
for rnd in range(int(sys.argv[3]) if len(sys.argv) > 3 else 9):
    sums = {k: 0.0 for k in cases}
    n = 20
    for _ in range(n):
        for k, cmd in cases.items():
            if k == "ours_cold":
                kill_holders()
            t = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, env=benv if k == "bind_print" else env)
            sums[k] += time.perf_counter() - t
    for k in cases: times[k].append(sums[k] / n)
    for k in ratios: ratios[k].append(sums[k] / sums["bind_print"])
kill_holders(); owner.kill()
for k, v in times.items(): print(f"{k:12} median {statistics.median(v)*1e3:.2f} ms  (rounds {min(v)*1e3:.2f}..{max(v)*1e3:.2f})")
for k, v in ratios.items(): print(f"{k:12} / bind_print: median {statistics.median(v):.2f}x (rounds {min(v):.2f}..{max(v):.2f})")
py = times["py_cli"]
for k in ("ours_warm", "ours_cold"):
    r = [a / b for a, b in zip(py, times[k])]
    print(f"py_cli / {k}: median {statistics.median(r):.1f}x (rounds {min(r):.1f}..{max(r):.1f})")
