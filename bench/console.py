#!/usr/bin/env python3
"""Benchmark of the console (issue 4), with the real processes on 127.0.0.1:

1. Policy propagation: a defender runs a command under `--console`; the policy is changed with
   PUT N times; latency = time of the defender's "Policy revision R ... applied" audit minus the
   time the PUT was sent (same clock). p50 / p99 / max.
2. Audit ingestion: D simulated defenders (one keep-alive connection each, concurrently) post B
   batches of E events each; throughput in events/s over the whole run, request latency p50 / p99.
3. Console RSS: idle, peak during the ingestion, after it.

The load generator shares the machine's CPUs with the console, so throughput is a floor.

Usage: bench/console.py [--console PATH] [--defender PATH] [--out bench/RESULTS-console.md]
Builds needed: cargo build --release -p defender-console
               cargo build --release --target x86_64-unknown-linux-musl
"""
import argparse
import datetime
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADMIN, DEFENDER = "bench-admin", "bench-defender"
POLICY = "/api/v1/policies/runtime/app-embedded"
AUDITS = "/api/v1/audits/runtime/app-embedded"


def percentile(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def rfc3339(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def start_console(binary, data, extra=(), timeout=30):
    """The console on a free port of 127.0.0.1 with `data` as its data directory (its log beside
    it), once it listens; `extra` flags appended. Returns the process and its address."""
    log = open(data + ".log", "w")
    proc = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--data-dir", data,
                             "--admin-token", ADMIN, "--defender-token", DEFENDER, *extra],
                            stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.time() + timeout
    while time.time() < deadline:
        for line in open(data + ".log"):
            if "listening on http://" in line:
                return proc, line.rsplit("//", 1)[1].strip()
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    sys.exit("the console did not start: " + open(data + ".log").read())


def call(conn, method, path, token, body=None):
    conn.request(method, path, body=body, headers={"Authorization": "Bearer " + token,
                                                   "Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    return r.status, data


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def propagation(args, addr, tmp):
    """Latencies (s) from PUT to the defender's 'applied' audit."""
    host, port = addr.split(":")
    audit = os.path.join(tmp, "audit.jsonl")
    env = dict(os.environ, PATH="/usr/bin:/bin")
    proc = subprocess.Popen([args.defender, "run", "--console", f"http://{addr}", "--token", DEFENDER,
                             "--state-dir", os.path.join(tmp, "state"), "--audit-file", audit,
                             "--container", "bench", "--", "sleep", "600"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    conn = http.client.HTTPConnection(host, int(port))

    def applied(revision, deadline):
        needle = f"Policy revision {revision} from the console applied"
        while time.time() < deadline:
            if os.path.exists(audit):
                for line in open(audit):
                    if needle in line:
                        return rfc3339(json.loads(line)["time"])
            time.sleep(0.001)
        sys.exit(f"revision {revision} was not applied: " + open(audit).read())

    latencies = []
    try:
        applied(1, time.time() + 30)
        for i in range(args.changes):
            doc = {"rules": [{"name": f"change {i}", "processes": {"effect": "prevent", "deny": [f"tool-{i}"]}}]}
            sent = time.time()
            status, body = call(conn, "PUT", POLICY, ADMIN, json.dumps(doc))
            assert status == 200, body
            revision = json.loads(body)["revision"]
            latencies.append(applied(revision, sent + 30) - sent)
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait()
    return latencies


def ingestion(args, addr, pid):
    host, port = addr.split(":")
    now = datetime.datetime.now(datetime.timezone.utc)

    def event(d):
        return {"id": str(uuid.uuid4()), "time": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "type": "process",
                "effect": "prevent", "rule": "bench", "attack": "processExplicitlyDenied",
                "container": f"bench-{d}", "image": "bench:1", "pid": 4242, "process": "/usr/bin/mkdir",
                "cmdline": "mkdir /tmp/x", "parent": "/usr/bin/dash",
                "message": "/usr/bin/mkdir launched from /usr/bin/dash is explicitly denied by a runtime rule. "
                           "Full command: mkdir /tmp/x", "count": 1}

    # Bodies made beforehand, so the clients spend their CPU on sending.
    bodies = [[json.dumps([event(d) for _ in range(args.events)]) for _ in range(args.batches)]
              for d in range(args.defenders)]
    latencies, stored, errors = [], [], []
    lock = threading.Lock()
    go = threading.Event()

    def defender(d):
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        go.wait()
        for body in bodies[d]:
            t0 = time.perf_counter()
            status, answer = call(conn, "POST", AUDITS, DEFENDER, body)
            dt = time.perf_counter() - t0
            with lock:
                if status != 200:
                    errors.append(answer)
                else:
                    latencies.append(dt)
                    stored.append(json.loads(answer)["stored"])

    rss = {"idle": rss_kib(pid), "peak": 0}
    sampling = True

    def sample():
        while sampling:
            rss["peak"] = max(rss["peak"], rss_kib(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=defender, args=(d,)) for d in range(args.defenders)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    go.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    sampling = False
    sampler.join()
    time.sleep(1)
    rss["after"] = rss_kib(pid)
    total = args.defenders * args.batches * args.events
    assert not errors, errors[:3]
    assert sum(stored) == total, (sum(stored), total)
    return elapsed, total, latencies, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--console", default=os.path.join(ROOT, "target/release/defender-console"))
    ap.add_argument("--defender", default=os.path.join(ROOT, "target/x86_64-unknown-linux-musl/release/defender"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/RESULTS-console.md"))
    ap.add_argument("--changes", type=int, default=50)
    ap.add_argument("--defenders", type=int, default=50)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--events", type=int, default=100)
    args = ap.parse_args()
    for b, how in ((args.console, "cargo build --release -p defender-console"),
                   (args.defender, "cargo build --release --target x86_64-unknown-linux-musl")):
        if not os.access(b, os.X_OK):
            sys.exit(f"{b} not found: {how}")

    tmp = tempfile.mkdtemp()
    console, addr = start_console(args.console, os.path.join(tmp, "data"))
    try:
        lat = propagation(args, addr, tmp)
        elapsed, total, req, rss = ingestion(args, addr, console.pid)
    finally:
        console.terminate()
        console.wait()

    ms = lambda s: f"{s * 1e3:.1f} ms"
    mib = lambda k: f"{k / 1024:.1f} MiB"
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Console benchmark",
        "",
        f"Run {when} by `bench/console.py` on kernel {platform.release()}, {os.cpu_count()} CPUs, "
        f"console `{os.path.relpath(args.console, ROOT)}` (SQLite in a temporary directory), "
        f"defender `{os.path.relpath(args.defender, ROOT)}`. Everything on 127.0.0.1; the load "
        "generator (Python) shares the CPUs with the console.",
        "",
        "| what | figure |",
        "|---|---|",
        f"| policy propagation, PUT → defender applied it, {len(lat)} changes | "
        f"p50 **{ms(percentile(lat, 50))}**, p99 **{ms(percentile(lat, 99))}**, max {ms(max(lat))} |",
        f"| audit ingestion, {args.defenders} concurrent defenders × {args.batches} batches × "
        f"{args.events} events ({total:,} events) | **{total / elapsed:,.0f} events/s** "
        f"({len(req) / elapsed:,.0f} batches/s, {elapsed:.2f} s) |",
        f"| batch request latency under that load | p50 {ms(percentile(req, 50))}, "
        f"p99 {ms(percentile(req, 99))} |",
        f"| console RSS | idle {mib(rss['idle'])}, peak under load **{mib(rss['peak'])}**, "
        f"after {mib(rss['after'])} |",
        "",
        "There is no native counterpart to compare with: these are absolute figures. "
        f"Propagation median over the run: {ms(statistics.median(lat))}.",
        "",
    ]
    text = "\n".join(lines)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
