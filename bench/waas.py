#!/usr/bin/env python3
"""Web application firewall benchmark (issue 17): requests per second and latency (p50, p99) of a
local HTTP application measured by wrk, alone and behind the firewall (under the defender with a
WAAS rule protecting its port, every protection on `prevent`), in the same run, rounds
interleaved. Two applications: test-programs' fast_http (a minimal Rust server: the worst case,
where the proxy's work is all there is to compete with it for the CPUs) and the tests' Python JSON
application (tests/common/waas_app.py on http.server: an application doing some work per
request). Loads: small GETs on one connection, one request at a time (the latency the proxy adds
by itself); small GETs and 64 KiB form POSTs on 16 connections (throughput at saturation).

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
PYTHON_APP = os.path.join(ROOT, "tests/common/waas_app.py")
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
# A 64 KiB form of 16 fields of plain words, 4 KiB each: what a long form looks like to the
# inspection (one value longer than the inspection cap, 16 KiB, would be refused as
# `malformedRequest`: docs/waas.md).
POST_LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
local fields = {}
for f = 1, 16 do
  local words = {}
  for i = 1, 820 do words[#words + 1] = "w" .. ((f * 820 + i) * 7919 % 1000) end
  fields[#fields + 1] = ("f" .. f .. "=" .. table.concat(words, "+")):sub(1, 4096)
end
wrk.body = table.concat(fields, "&"):sub(1, 65536)
"""
# (label, application, wrk connections, POST body or not)
LOADS = [
    ("GET, 1 connection", "fast_http", 1, False),
    ("GET, 16 connections", "fast_http", 16, False),
    ("POST 64 KiB form, 16 connections", "fast_http", 16, True),
    ("GET, 1 connection", "Python", 1, False),
    ("GET, 16 connections", "Python", 16, False),
]


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


def wrk(port, seconds, connections, script):
    threads = min(2, connections)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
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


def start(args, app, port, firewall, tmp):
    if app == "Python":
        cmd = [sys.executable, PYTHON_APP, os.path.join(tmp, f"ready-{port}"), "127.0.0.1",
               str(port)]
    else:
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


def descendants(pid):
    """Every process below `pid` (the defender's supervisor and the application under it)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop(proc):
    """Kills `proc` and everything below it: killing the defender alone would leave its
    supervisor and the application running, holding the port and the CPUs."""
    for pid in descendants(proc.pid) + [proc.pid]:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    proc.wait()


def load_average():
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


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
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "post.lua")
        with open(script, "w") as f:
            f.write(POST_LUA)
        for _ in range(args.rounds):
            for app in ("fast_http", "Python"):
                for firewall in (False, True):
                    port = free_port()
                    proc = start(args, app, port, firewall, tmp)
                    try:
                        for label, of, connections, post in LOADS:
                            if of == app:
                                results.setdefault((label, app, firewall), []).append(
                                    wrk(port, args.seconds, connections, post and script))
                    finally:
                        stop(proc)
    lines = [
        f"Machine: {platform.node()}, {os.cpu_count()} CPUs, kernel {platform.release()}; "
        f"load average (1, 5, 15 min) {load_before} before, {load_average()} after; "
        f"{args.seconds} s a measurement, median of {args.rounds} interleaved rounds; "
        f"wrk -t1 -c1 or -t2 -c16.",
        "",
        "| application | load | alone: req/s | p50 | p99 | behind the firewall: req/s | p50 | p99 "
        "| throughput ratio | p50 added |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for label, app, _, post in LOADS:
        alone = [statistics.median(x) for x in zip(*results[(label, app, False)])]
        behind = [statistics.median(x) for x in zip(*results[(label, app, True)])]
        ratio = behind[0] / alone[0]
        added = behind[1] - alone[1]
        lines.append(
            f"| {app} | {label} | {alone[0]:,.0f} | {alone[1]:.0f} us | {alone[2]:.0f} us "
            f"| {behind[0]:,.0f} | {behind[1]:.0f} us | {behind[2]:.0f} us "
            f"| {ratio:.2f}x | +{added:.0f} us |")
        if not post:
            verdicts.append(
                f"{app}, {label}: throughput >= 0.8x {'met' if ratio >= 0.8 else 'MISSED'} "
                f"({ratio:.2f}x); p50 <= +200 us {'met' if added <= 200 else 'MISSED'} "
                f"(+{added:.0f} us)")
    lines += [""] + [f"- {v}" for v in verdicts]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.out, "w") as f:
        f.write("# bench/waas.py\n\n" + text)


if __name__ == "__main__":
    main()
