#!/usr/bin/env python3
"""Flood benchmark (issue 9): 1,000,000 denied launches and 1,000,000 denied connects from one
process, under the real defender, with native runs of the same loops in the same run.

Reports, per flood: events the defender answered per second (and the same loop's native rate), the
defender's peak resident memory (VmHWM) against a run of 1,000 events (bounded memory: the peak must
not grow with the flood), and how the audits folded (lines written; the counts they carry must add
up to every denied event: nothing lost).

Usage: bench/flood.py [--defender PATH] [--flood PATH] [--n 1000000] [--out bench/RESULTS-flood.md]
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DENIED_NET = "203.0.113.0"  # TEST-NET-3: denied by the policy, so nothing is ever sent there.


def parse(out):
    return dict(kv.split("=", 1) for kv in out.split())


def flood(cmd):
    """Runs one flood; returns the flood helper's report."""
    r = subprocess.run(cmd, check=True, capture_output=True, text=True)
    line = [l for l in r.stdout.splitlines() if l.startswith("ok=")]
    if not line:
        sys.exit(f"{cmd}: no report (stdout {r.stdout!r}, stderr {r.stderr[-2000:]!r})")
    return parse(line[-1])


def audits(path):
    lines = 0
    counted = 0
    with open(path) as f:
        for l in f:
            e = json.loads(l)
            if e["type"] in ("process", "network"):
                lines += 1
                counted += e["count"]
    return lines, counted


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--defender", default=os.path.join(ROOT, "target/x86_64-unknown-linux-musl/release/defender"))
    ap.add_argument("--flood", default=os.path.join(ROOT, "target/x86_64-unknown-linux-musl/release/flood"))
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/RESULTS-flood.md"))
    args = ap.parse_args()
    for p, how in ((args.defender, "cargo build --release --target x86_64-unknown-linux-musl"),
                   (args.flood, "cargo build --release --target x86_64-unknown-linux-musl -p defender-test-programs --bin flood")):
        if not os.access(p, os.X_OK):
            sys.exit(f"{p} not found: {how}")

    tmp = tempfile.mkdtemp()
    policy = os.path.join(tmp, "policy.json")
    with open(policy, "w") as f:
        json.dump({"rules": [{"name": "flood",
                              "processes": {"effect": "prevent", "allow": [], "deny": ["mkdir"]},
                              "network": {"effect": "prevent",
                                          "outbound": {"allow": [], "deny": [DENIED_NET + "/24"]}}}]}, f)
    floods = [
        ("denied launches (`execve` of a denied program)", "exec", "/bin/mkdir", "/nonexistent/mkdir"),
        ("denied connects, one destination", "connect", DENIED_NET + ":443", DENIED_NET + ":443"),
        ("denied connects, every one to a new destination", "connect-distinct", DENIED_NET, DENIED_NET),
    ]
    rows = []
    for title, sub, arg, native_arg in floods:
        native = flood([args.flood, sub, str(args.n), native_arg])
        runs = {}
        for n in (1000, args.n // 10, args.n):
            audit = os.path.join(tmp, f"{sub}-{n}.jsonl")
            cmd = [args.defender, "run", "--policy", policy, "--audit-file", audit,
                   "--container", "bench", "--image", "bench", "--", args.flood, sub, str(n), arg]
            t0 = time.perf_counter()
            rep = flood(cmd)
            wall = time.perf_counter() - t0
            if int(rep["errno"]) != n:
                sys.exit(f"{sub}: {rep['ok']} of {n} calls went through; all must be denied")
            lines, counted = audits(audit)
            if counted != n:
                sys.exit(f"{sub}: the audits count {counted} events of {n}: some were lost")
            runs[n] = (rep, wall, lines)
        rep, wall, lines = runs[args.n]
        small = runs[1000][0]
        tenth = runs[args.n // 10][0]
        el = float(rep["elapsed_s"])
        nat = float(native["elapsed_s"])
        rows.append(
            f"| {title} | {args.n / nat:,.0f}/s | **{args.n / el:,.0f}/s** "
            f"({el / args.n * 1e6:.1f} µs per call, {el / nat:.1f}× native) | "
            f"{int(small['parent_vmhwm_kb']) / 1024:.1f} MiB | {int(tenth['parent_vmhwm_kb']) / 1024:.1f} MiB | "
            f"**{int(rep['parent_vmhwm_kb']) / 1024:.1f} MiB** | "
            f"{lines:,} lines, counts add up to {args.n:,} |")
        print(rows[-1], flush=True)

    uname = platform.uname()
    text = f"""# Flood benchmark

Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `bench/flood.py` on kernel {uname.release}, {os.cpu_count()} CPUs,
binary `{os.path.relpath(args.defender, ROOT)}`. One process makes {args.n:,} calls in a loop, each denied
(`prevent`) and answered EPERM by the defender; "native" is the same loop without the defender (a launch of a
missing file, a connect that succeeds: the cheapest native outcome of the same call). Peak memory is the
defender's VmHWM after the last call, against runs of 1,000 and of a tenth as many calls of the same kind: the flood
must not grow it past what the fold windows hold.
Audits: identical events within one second fold into one line with a `count`; at most 4,096 fold windows are
open, the oldest closing early, so distinct events (a new destination each time) are each written and memory
stays flat. The benchmark fails if any call got through or any event is missing from the counts.

| flood | native rate | defender: events answered | peak RSS, 1,000 calls | peak RSS, a tenth | peak RSS, flood | audits |
|---|---|---|---|---|---|---|
""" + "\n".join(rows) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
