#!/usr/bin/env python3
"""Web application firewall benchmark (issue 17): requests per second and latency (p50, p99) of a
fast local HTTP application (test-programs' fast_http) measured by wrk, alone and behind the
firewall (under the defender with a WAAS rule protecting its port, every protection on), in the
same run, rounds interleaved; small GETs and 64 KiB POSTs.

Budget (docs/benchmarks.md): for small GETs, at least 0.8x the application's throughput and at most
200 us more at p50.

Usage: bench/waas.py [--defender PATH] [--app PATH] [--seconds 5] [--rounds 3]
                     [--out bench/RESULTS-waas.md]
"""
import argparse
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target/x86_64-unknown-linux-musl/release")
POLICY = {
    "rules": [{
        "name": "bench",
        "apps": [{
            "port": 0,
            "protections": {k: "prevent" for k in (
                "sqli", "xss", "cmdi", "codeInjection", "lfi", "shellshock", "attackTools",
                "malformedRequest")},
            "maxBodyBytes": 1 << 20,
        }],
    }],
}
# A 64 KiB form body of plain words: what an upload of text looks like to the inspection.
POST_LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
local words = {}
for i = 1, 6554 do words[#words + 1] = "w" .. (i * 7919 % 1000) end
wrk.body = ("text=" .. table.concat(words, "+")):sub(1, 65536)
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the application exited: {proc.stderr.read()[-2000:]!r}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    sys.exit(f"nothing listens on port {port}")


UNITS = {"us": 1, "ms": 1000, "s": 1_000_000}


def micros(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * UNITS[m.group(2)]


def wrk(port, seconds, script):
    cmd = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [f"http://127.0.0.1:{port}/items?id=42"], check=True,
                         capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = micros(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = micros(re.search(r"\s99%\s+(\S+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        sys.exit(f"{non2xx.group(1)} requests were not answered 200: the benchmark measures refusals")
    return rps, p50, p99


def start(args, port, firewall, tmp):
    cmd = [args.app, f"127.0.0.1:{port}"]
    if firewall:
        policy = json.loads(json.dumps(POLICY))
        policy["rules"][0]["apps"][0]["port"] = port
        path = os.path.join(tmp, "waas.json")
        with open(path, "w") as f:
            json.dump(policy, f)
        cmd = [args.defender, "run", "--waas-policy", path,
               "--audit-file", os.path.join(tmp, "audit.jsonl"), "--"] + cmd
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_listening(port, proc)
    return proc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--defender", default=os.path.join(RELEASE, "defender"))
    ap.add_argument("--app", default=os.path.join(RELEASE, "fast_http"))
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/RESULTS-waas.md"))
    args = ap.parse_args()
    for p, how in ((args.defender, "cargo build --release --target x86_64-unknown-linux-musl"),
                   (args.app, "cargo build --release --target x86_64-unknown-linux-musl -p defender-test-programs --bin fast_http")):
        if not os.access(p, os.X_OK):
            sys.exit(f"{p} not found: {how}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "post.lua")
        with open(script, "w") as f:
            f.write(POST_LUA)
        for _ in range(args.rounds):
            for firewall in (False, True):
                port = free_port()
                proc = start(args, port, firewall, tmp)
                try:
                    for load, lua in (("GET", None), ("POST 64 KiB", script)):
                        results.setdefault((load, firewall), []).append(
                            wrk(port, args.seconds, lua))
                finally:
                    proc.kill()
                    proc.wait()
    lines = [
        f"Machine: {platform.node()}, {os.cpu_count()} CPUs, kernel {platform.release()}; "
        f"wrk -t2 -c16, {args.seconds} s a measurement, median of {args.rounds} interleaved rounds.",
        "",
        "| load | application alone: req/s | p50 | p99 | behind the firewall: req/s | p50 | p99 "
        "| throughput ratio | p50 added |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for load in ("GET", "POST 64 KiB"):
        alone = [statistics.median(x) for x in zip(*results[(load, False)])]
        behind = [statistics.median(x) for x in zip(*results[(load, True)])]
        ratio = behind[0] / alone[0]
        added = behind[1] - alone[1]
        lines.append(
            f"| {load} | {alone[0]:,.0f} | {alone[1]:.0f} us | {alone[2]:.0f} us "
            f"| {behind[0]:,.0f} | {behind[1]:.0f} us | {behind[2]:.0f} us "
            f"| {ratio:.2f}x | +{added:.0f} us |")
        if load == "GET":
            verdicts.append(f"GET throughput >= 0.8x: {'met' if ratio >= 0.8 else 'MISSED'} ({ratio:.2f}x)")
            verdicts.append(f"GET p50 <= +200 us: {'met' if added <= 200 else 'MISSED'} (+{added:.0f} us)")
    lines += [""] + [f"- {v}" for v in verdicts]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.out, "w") as f:
        f.write("# bench/waas.py\n\n" + text)


if __name__ == "__main__":
    main()
