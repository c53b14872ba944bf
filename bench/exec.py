#!/usr/bin/env python3
"""Benchmark of the exec path (issue 2): the defender's startup and a shell loop of /bin/true
launches, each measured against native in the same run, interleaved, medians of repetitions.

Usage: bench/exec.py [--defender PATH] [--out bench/RESULTS-exec.md]
Budget (docs/benchmarks.md): the loop at most 1.15x native; startup at most 5 ms over native.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

LOOP = 'i=0; while [ $i -lt 2000 ]; do /bin/true; i=$((i+1)); done'
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(cmd, env=None):
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--defender", default=os.path.join(ROOT, "target/x86_64-unknown-linux-musl/release/defender"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/RESULTS-exec.md"))
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--starts", type=int, default=300)
    args = ap.parse_args()
    d = args.defender
    if not os.access(d, os.X_OK):
        sys.exit(f"{d} not found: cargo build --release --target x86_64-unknown-linux-musl")

    tmp = tempfile.mkdtemp()
    prevent = os.path.join(tmp, "prevent.json")
    with open(prevent, "w") as f:
        # Enforcing, with deny and allow lists, so every launch is judged in full.
        json.dump({"rules": [{"name": "bench", "processes": {"effect": "prevent",
                  "allow": ["sh", "dash", "true"], "deny": ["mkdir", "nmap"]}}]}, f)
    # 50 custom rules on launches, none matching /bin/true, reading every kind of field: each
    # launch is evaluated against all 50 (the first true one would stop the search).
    def custom(effect):
        shapes = [
            'proc.name in ("nc{i}", "ncat{i}") and proc.cmdline contains " -l{i}"',
            'proc.name in ("sh{i}", "bash{i}") and proc.pname = "web{i}"',
            'proc.user = "user{i}" or (proc.path startswith "/opt/tool{i}/" and not proc.interactive)',
            'proc.cmdline contains "--secret-{i}" and proc.uid >= {i}',
        ]
        library = [{"name": f"c{i}", "type": "processes", "script": shapes[i % 4].format(i=i)}
                   for i in range(50)]
        path = os.path.join(tmp, f"custom-{effect}.json")
        with open(path, "w") as f:
            json.dump({"customRules": library, "rules": [{"name": "bench", "customRules": [
                {"name": c["name"], "effect": effect} for c in library]}]}, f)
        return path
    audit = os.path.join(tmp, "audit.jsonl")
    base = [d, "run", "--audit-file", audit]
    setups = {
        "native": [],
        "defender, default policy (alert)": base + ["--"],
        "defender, prevent policy with allow list": base + ["--policy", prevent, "--"],
        "defender, 50 process custom rules (alert)": base + ["--policy", custom("alert"), "--"],
        "defender, 50 process custom rules (prevent)": base + ["--policy", custom("prevent"), "--"],
    }

    # Startup: mean wall time of one short-lived command, interleaved in batches.
    starts = {name: [] for name in ("native", "defender")}
    for _ in range(args.starts):
        starts["native"].append(timed(["/bin/true"]))
        starts["defender"].append(timed(base + ["--", "/bin/true"]))
    start_native = statistics.median(starts["native"]) * 1e3
    start_def = statistics.median(starts["defender"]) * 1e3

    # The loop: 2,000 launches of /bin/true by one shell.
    loops = {name: [] for name in setups}
    for _ in range(args.reps):
        for name, prefix in setups.items():
            loops[name].append(timed(prefix + ["sh", "-c", LOOP]))
    native = statistics.median(loops["native"])

    rows = [
        f"| startup, `defender run -- /bin/true` | {start_native:.2f} ms native | {start_def:.2f} ms | **+{start_def - start_native:.2f} ms** | ≤ +5 ms |",
    ]
    for name in setups:
        if name == "native":
            continue
        m = statistics.median(loops[name])
        per_exec = (m - native) / 2000 * 1e6
        # Each repetition's own ratio (defender against the native run just before it) shows the
        # spread on a shared, noisy machine.
        ratios = sorted(d / n for d, n in zip(loops[name], loops["native"]))
        spread = f"{ratios[0]:.2f}–{ratios[-1]:.2f}"
        rows.append(f"| loop of 2,000 `/bin/true`, {name} | {native*1e3:.0f} ms native | {m*1e3:.0f} ms | **{m/native:.3f}×** ({per_exec:+.0f} µs per launch; runs {spread}) | ≤ 1.15× |")
    kernel = platform.release()
    cpus = os.cpu_count()
    report = "\n".join([
        "# Exec benchmark",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `bench/exec.py` on kernel {kernel}, {cpus} CPUs,",
        f"binary `{os.path.relpath(d, ROOT)}`; medians of {args.starts} starts and {args.reps} loops, native and defender interleaved.",
        "",
        "| what | native | defender | overhead | budget |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ])
    print(report)
    with open(args.out, "w") as f:
        f.write(report)


if __name__ == "__main__":
    main()
